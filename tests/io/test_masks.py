"""io/masks.py against brute-force references: which files, their union, their grid shares."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codegraph_ad.io.masks import grid_shares, mask_files, mvtec_mask_file, mvtec_mask_path, union_mask


def _save(path: Path, mask: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    return path


def _pool_loop(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Adaptive average pooling by its definition: cell i spans [floor(iH/h), ceil((i+1)H/h))."""
    H, W = mask.shape
    h, w = grid
    out = np.zeros(h * w)
    for i in range(h):
        for j in range(w):
            r0, r1 = math.floor(i * H / h), math.ceil((i + 1) * H / h)
            c0, c1 = math.floor(j * W / w), math.ceil((j + 1) * W / w)
            total = 0.0
            for r in range(r0, r1):
                for c in range(c0, c1):
                    total += float(mask[r, c])
            out[i * w + j] = total / ((r1 - r0) * (c1 - c0))
    return out


def _bilinear_loop(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize, align_corners=False (half-pixel centres, edge-clamped), no antialias."""
    H, W = img.shape
    h, w = size
    out = np.zeros(size)
    for y in range(h):
        sy = max((y + 0.5) * H / h - 0.5, 0.0)
        y0 = min(int(math.floor(sy)), H - 1)
        y1, fy = min(y0 + 1, H - 1), sy - y0
        for x in range(w):
            sx = max((x + 0.5) * W / w - 0.5, 0.0)
            x0 = min(int(math.floor(sx)), W - 1)
            x1, fx = min(x0 + 1, W - 1), sx - x0
            top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
            bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
            out[y, x] = top * (1 - fy) + bottom * fy
    return out


def _nearest_loop(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest neighbour by pixel centres: target pixel x reads source floor((x + 0.5) W / w)."""
    H, W = img.shape
    h, w = size
    return np.array([[img[int((y + 0.5) * H / h), int((x + 0.5) * W / w)] for x in range(w)] for y in range(h)])


@pytest.mark.parametrize("shape, grid", [((12, 8), (3, 2)), ((7, 5), (3, 2)), ((9, 13), (4, 5)), ((5, 5), (5, 5))])
def test_grid_shares_match_the_cell_loop(shape, grid):
    rng = np.random.default_rng(sum(shape) + sum(grid))
    masks = rng.random((3, *shape)) < 0.4
    got = grid_shares(masks, grid)
    assert got.dtype == np.float32 and got.shape == (3, grid[0] * grid[1])
    for k in range(3):
        np.testing.assert_allclose(got[k], _pool_loop(masks[k], grid), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(grid_shares(masks[k], grid), got[k])  # one image = a stack of one


def test_grid_shares_refuse_other_ranks():
    with pytest.raises(ValueError, match="shape"):
        grid_shares(np.zeros(5), (1, 1))


def test_union_is_the_pixelwise_or_of_the_files(tmp_path):
    rng = np.random.default_rng(1)
    a, b = rng.random((6, 9)) < 0.3, rng.random((6, 9)) < 0.3
    files = [_save(tmp_path / "a.png", a), _save(tmp_path / "b.png", b)]
    want = np.zeros((6, 9), dtype=bool)
    for r in range(6):
        for c in range(9):
            want[r, c] = bool(a[r, c]) or bool(b[r, c])
    got = union_mask(files, (6, 9))
    assert got.dtype == bool
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(union_mask([], (6, 9)), np.zeros((6, 9), bool))
    np.testing.assert_array_equal(union_mask([], (6, 9), (4, 4), "bilinear"), np.zeros((4, 4), bool))


def test_a_file_of_another_size_is_read_at_the_image_size_by_nearest(tmp_path):
    rng = np.random.default_rng(2)
    small = rng.random((4, 6)) < 0.5
    path = _save(tmp_path / "small.png", small)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # load_mask warns about the size, by design
        got = union_mask([path], (8, 12))
    np.testing.assert_array_equal(got, _nearest_loop(small, (8, 12)))


@pytest.mark.parametrize("size", [(4, 4), (5, 3), (10, 14)])
def test_bilinear_union_at_a_size_is_cut_at_one_half(tmp_path, size):
    rng = np.random.default_rng(size[0])
    mask = rng.random((7, 9)) < 0.5
    path = _save(tmp_path / "m.png", mask)
    got = union_mask([path], (7, 9), size, resample="bilinear")
    np.testing.assert_array_equal(got, _bilinear_loop(mask.astype(np.float64), size) >= 0.5)


@pytest.mark.parametrize("size", [(3, 4), (14, 18), (7, 9)])
def test_nearest_union_at_a_size(tmp_path, size):
    rng = np.random.default_rng(size[1])
    mask = rng.random((7, 9)) < 0.5
    path = _save(tmp_path / "m.png", mask)
    np.testing.assert_array_equal(union_mask([path], (7, 9), size, resample="nearest"), _nearest_loop(mask, size))


def test_unknown_resample_is_refused(tmp_path):
    with pytest.raises(ValueError, match="resample"):
        union_mask([], (2, 2), (1, 1), resample="bicubic")


def test_mask_files_from_the_row_else_the_mvtec_layout(tmp_path):
    cat = tmp_path / "cat"
    good, bad, unmasked = cat / "test/good/000.png", cat / "test/cut/000.png", cat / "test/cut/001.png"
    mask = _save(mvtec_mask_file(cat, "cut", "000"), np.ones((2, 2), bool))
    assert mask == cat / "ground_truth" / "cut" / "000_mask.png"
    assert mvtec_mask_path(good) is None  # 'good' has no mask, even if a file were there
    assert mvtec_mask_path(bad) == mask
    assert mvtec_mask_path(unmasked) is None  # missing file
    assert mvtec_mask_path(tmp_path / "loose" / "000.png") is None  # not the layout
    assert mask_files({}, bad) == [mask]
    assert mask_files({"mask_paths": None}, bad) == [mask]
    assert mask_files({"mask_paths": []}, bad) == []  # the row says: no mask
    assert mask_files({"mask_paths": ["x.png"]}, bad) == [Path("x.png")]
