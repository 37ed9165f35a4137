"""Every bad or unusual input has a defined outcome: decoded right, skipped, or refused.

Refusals are checked through the CLI (exit code and one-line message on stderr, no
traceback); processed cases through the API on a tiny image size.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codegraph_ad.api import detect, evaluate
from codegraph_ad.cli import main
from codegraph_ad.errors import InputError
from codegraph_ad.io.images import discover_images, load_image_rgb, load_mask

from . import corpus
from .conftest import IMAGE_SIZE, small_config

CLI_SMALL = ["--image-size", str(IMAGE_SIZE), "--method", "musc", "--no-overlays", "--quiet", "--no-cache"]


# ---------------------------------------------------------------- decoding, one file at a time


@pytest.mark.parametrize("case", sorted(corpus.BAD_FILES))
def test_bad_file_raises_input_error_naming_it(tmp_path: Path, case: str) -> None:
    path = corpus.BAD_FILES[case](tmp_path)
    with pytest.raises(InputError) as info:
        load_image_rgb(path)
    assert str(path) in str(info.value)


def test_huge_header_refused_without_decoding(tmp_path: Path) -> None:
    path = corpus.write_huge_header(tmp_path)
    with pytest.raises(InputError, match="too large to decode safely"):
        load_image_rgb(path)


def test_non_images_say_what_they_look_like(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="HTML page"):
        load_image_rgb(corpus.write_html_as_jpg(tmp_path))
    with pytest.raises(InputError, match="text file"):
        load_image_rgb(corpus.write_text_as_png(tmp_path))


def test_sixteen_bit_tiff_scales_by_full_range(tmp_path: Path) -> None:
    rgb = corpus.textured(1, (20, 30))
    assert np.array_equal(load_image_rgb(corpus.write_16bit_tiff(tmp_path / "rgb16.tif", rgb)), rgb)
    gray = rgb[..., 0]
    out = load_image_rgb(corpus.write_16bit_gray_tiff(tmp_path / "gray16.tif", gray))
    assert np.array_equal(out, np.repeat(gray[..., None], 3, axis=2))
    # A dark 16-bit image (max 200 of 65535) must stay dark, not be stretched to 8-bit range.
    dark = np.full((8, 8), 200, dtype=np.uint16)
    Image.fromarray(dark).save(tmp_path / "dark16.png")
    assert load_image_rgb(tmp_path / "dark16.png").max() == 1


def test_float_tiffs_gray_and_rgb(tmp_path: Path) -> None:
    rgb = corpus.textured(2, (20, 30))
    gray01 = rgb[..., 1] / 255.0
    out = load_image_rgb(corpus.write_float_gray_tiff(tmp_path / "f.tif", gray01))
    assert np.array_equal(out[..., 0], rgb[..., 1])
    out = load_image_rgb(corpus.write_float_rgb_tiff(tmp_path / "frgb.tif", rgb / 255.0))
    assert np.array_equal(out, rgb)


def test_palette_grayscale_rgba_cmyk(tmp_path: Path) -> None:
    rgb = corpus.textured(3, (24, 40))
    pal = corpus.write_palette_png(tmp_path / "pal.png", rgb)
    with Image.open(pal) as im:
        assert im.mode == "P"
        want = np.asarray(im.convert("RGB"))
    assert np.array_equal(load_image_rgb(pal), want)

    gray = rgb[..., 2]
    out = load_image_rgb(corpus.write_gray_png(tmp_path / "gray.png", gray))
    assert out.shape == (24, 40, 3) and np.array_equal(out[..., 1], gray)

    rgba = np.dstack([rgb, np.full((24, 40), 128, np.uint8)])
    rgba[0, 0] = (200, 100, 50, 128)
    out = load_image_rgb(corpus.write_rgba_png(tmp_path / "rgba.png", rgba))
    assert tuple(out[0, 0]) == (100, 50, 25)  # composited on black: round(v * 128 / 255)

    out = load_image_rgb(corpus.write_cmyk_jpeg(tmp_path / "cmyk.jpg", rgb))
    assert out.shape == rgb.shape and np.abs(out.astype(int) - rgb).mean() < 4


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    upright = corpus.textured(4, (48, 80), defect=True)
    rotated = load_image_rgb(corpus.write_exif_rotated_jpeg(tmp_path / "rot.jpg", upright))
    twin = load_image_rgb(corpus.write_jpeg(tmp_path / "up.jpg", upright))
    assert rotated.shape == twin.shape == (48, 80, 3)
    assert np.abs(rotated.astype(int) - twin).mean() < 4


def test_symlink_loop_lists_each_image_once(tmp_path: Path) -> None:
    paths = corpus.normal_set(tmp_path / "imgs", 3)
    os.symlink(tmp_path / "imgs", tmp_path / "imgs" / "loop")
    os.symlink(tmp_path / "imgs" / "missing.png", tmp_path / "imgs" / "dangling.png")
    found = discover_images(tmp_path / "imgs")
    assert sorted(p.name for p in found) == sorted([p.name for p in paths] + ["dangling.png"])
    with pytest.raises(InputError, match="dangling.png: cannot read file"):
        load_image_rgb(tmp_path / "imgs" / "dangling.png")


def test_mask_of_other_size_is_resized_with_warning(tmp_path: Path) -> None:
    m = np.zeros((20, 30), np.uint8)
    m[5:10, 10:20] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    with pytest.warns(UserWarning, match="m.png: mask is 30x20 but its image is 60x40"):
        mask = load_mask(tmp_path / "m.png", (40, 60))
    assert mask.shape == (40, 60) and mask.sum() == 4 * 50


def test_non_binary_mask_counts_every_nonzero_pixel(tmp_path: Path) -> None:
    m = np.zeros((10, 10), np.uint8)
    m[0, :3] = (1, 128, 255)
    Image.fromarray(m).save(tmp_path / "labels.png")
    with pytest.warns(UserWarning, match="labels.png: mask is not binary"):
        mask = load_mask(tmp_path / "labels.png", (10, 10))
    assert mask.sum() == 3
    Image.fromarray((m > 0).astype(np.uint8)).save(tmp_path / "zero_one.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_mask(tmp_path / "zero_one.png", (10, 10)).sum() == 3


# ---------------------------------------------------------------- CLI: refusals and skipping


@pytest.mark.parametrize("case", sorted(corpus.BAD_FILES))
def test_cli_stops_on_bad_file_with_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  case: str) -> None:
    folder = tmp_path / "imgs"
    corpus.normal_set(folder, 3)
    bad = corpus.BAD_FILES[case](folder)
    out = tmp_path / "out"
    rc = main(["detect", str(folder), "--out", str(out), *CLI_SMALL])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and str(bad) in err and "--skip-bad" in err
    assert "Traceback" not in err
    assert not out.exists()  # the run created the folder and removed it when it stopped


def test_cli_skip_bad_lists_every_skipped_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "imgs"
    corpus.normal_set(folder, 4)
    bad = sorted(str(write(folder)) for write in corpus.BAD_FILES.values())
    out = tmp_path / "out"
    with pytest.warns(UserWarning) as record:
        rc = main(["detect", str(folder), "--out", str(out), "--skip-bad", *CLI_SMALL])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "scores.json").read_text())
    assert sorted(s["path"] for s in report["skipped"]) == bad
    assert all(s["reason"] for s in report["skipped"])
    assert len(report["images"]) == 4 and all(np.isfinite(r["score"]) for r in report["images"])
    listing = "\n".join(str(w.message) for w in record if "skipped" in str(w.message))
    assert all(b in listing for b in bad)


def test_cli_refuses_when_too_few_images_survive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "imgs"
    corpus.normal_set(folder, 2)
    corpus.write_zero_byte(folder)
    with pytest.warns(UserWarning, match="empty.png"):
        rc = main(["detect", str(folder), "--out", str(tmp_path / "out"), "--skip-bad", *CLI_SMALL])
    err = capsys.readouterr().err
    assert rc == 2 and "batch has 2 image(s)" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("make", ["missing", "file", "empty"])
def test_cli_refuses_unusable_input_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str], make: str) -> None:
    target = tmp_path / "in"
    if make == "file":
        target.write_text("x")
    elif make == "empty":
        target.mkdir()
    rc = main(["detect", str(target), "--out", str(tmp_path / "out"), *CLI_SMALL])
    err = capsys.readouterr().err
    assert rc == 2 and str(target) in err and "Traceback" not in err


# ---------------------------------------------------------------- API: processed correctly


def _mixed_batch(folder: Path) -> dict[str, Path]:
    """One batch holding every unusual-but-valid kind of file."""
    folder.mkdir(parents=True)
    sub = folder / "sub dir ü"
    sub.mkdir()
    base = corpus.textured(10, (48, 80), defect=True)
    files = {
        "upright": corpus.write_jpeg(folder / "part upright.jpg", base),
        "exif": corpus.write_exif_rotated_jpeg(folder / "part exif.jpg", base),
        "png8": corpus.save_png(folder / "plain8.png", corpus.textured(11)),
        "tiff16": corpus.write_16bit_tiff(folder / "plain16.tif", corpus.textured(11)),
        "float_tiff": corpus.write_float_rgb_tiff(folder / "float.tiff", corpus.textured(12) / 255.0),
        "palette": corpus.write_palette_png(folder / "palette.png", corpus.textured(13)),
        "cmyk": corpus.write_cmyk_jpeg(folder / "cmyk.jpg", corpus.textured(14)),
        "gray": corpus.write_gray_png(folder / "gray.png", corpus.textured(15)[..., 0]),
        "rgba": corpus.write_rgba_png(sub / "rgba.png", np.dstack([corpus.textured(16), np.full((64, 64), 255, np.uint8)])),
        "tall": corpus.save_png(sub / "tall 高.png", corpus.textured(17, (120, 30))),
        "wide": corpus.save_png(folder / "wide ñ.png", corpus.textured(18, (30, 120))),
        "dup_a": corpus.save_png(folder / "dup a.png", corpus.textured(19)),
    }
    files["dup_b"] = sub / "dup b.png"
    files["dup_b"].write_bytes(files["dup_a"].read_bytes())
    os.symlink(folder, sub / "loop")
    return files


def test_mixed_batch_is_processed_correctly(tmp_path: Path, backbone) -> None:  # noqa: ANN001
    files = _mixed_batch(tmp_path / "imgs")
    with pytest.warns(UserWarning, match="byte-identical"):
        res = detect(tmp_path / "imgs", tmp_path / "out", small_config(), backbone=backbone, progress=False)
    by_path = {p: i for i, p in enumerate(res.paths)}
    assert sorted(by_path) == sorted(files.values())  # each file once despite the symlink loop
    assert np.isfinite(res.scores.image_scores).all() and np.isfinite(res.scores.patch_scores.numpy()).all()

    def idx(k: str) -> int:
        return by_path[files[k]]

    # Maps come back at each input's own (upright) resolution.
    for k, p in files.items():
        amap = np.load(tmp_path / "out" / "maps" / f"{res.names[idx(k)]}.npy")
        h, w = load_image_rgb(p).shape[:2]
        assert amap.shape == (h, w) and np.isfinite(amap).all(), k
    assert res.original_sizes[idx("exif")] == res.original_sizes[idx("upright")] == (48, 80)

    # The EXIF-rotated file's map has the same orientation as its upright twin's.
    m_up = res.scores.patch_scores[idx("upright")].numpy()
    m_rot = res.scores.patch_scores[idx("exif")].numpy()
    assert np.corrcoef(m_up, m_rot)[0, 1] > 0.9
    assert np.argmax(m_up) == np.argmax(m_rot)

    # 16-bit TIFF holding v * 257 decodes to exactly the 8-bit image: same score.
    assert res.scores.raw_image_scores[idx("tiff16")] == res.scores.raw_image_scores[idx("png8")]
    # Byte-identical files: identical scores and maps.
    assert res.scores.image_scores[idx("dup_a")] == res.scores.image_scores[idx("dup_b")]
    assert np.array_equal(res.scores.patch_scores[idx("dup_a")], res.scores.patch_scores[idx("dup_b")])

    # Non-ASCII names and spaces survive into every output.
    rows = json.loads((tmp_path / "out" / "scores.json").read_text())["images"]
    assert {r["name"] for r in rows} == set(res.names)
    assert any("高" in n for n in res.names) and any(" " in n for n in res.names)


@pytest.mark.parametrize("method", ["musc", "codegraph"])
def test_all_black_batch_gives_finite_scores(tmp_path: Path, backbone, method: str) -> None:  # noqa: ANN001
    folder = tmp_path / "black"
    folder.mkdir()
    for i in range(4):
        corpus.save_png(folder / f"black_{i}.png", np.zeros((40 + i, 50, 3), np.uint8))
    res = detect(folder, None, small_config(method), backbone=backbone, progress=False)
    assert np.isfinite(res.scores.image_scores).all()
    assert np.isfinite(res.scores.raw_image_scores).all()
    assert np.isfinite(res.scores.patch_scores.numpy()).all()


def test_evaluate_with_mismatched_and_non_binary_masks(tmp_path: Path, backbone) -> None:  # noqa: ANN001
    cat = tmp_path / "widget"
    good = corpus.normal_set(cat / "test" / "good", 4)
    assert good
    (cat / "test" / "scratch").mkdir(parents=True)
    (cat / "ground_truth" / "scratch").mkdir(parents=True)
    for i in range(2):
        corpus.save_png(cat / "test" / "scratch" / f"{i:03d}.png", corpus.textured(50 + i, defect=True))
    small = np.zeros((32, 32), np.uint8)
    small[4:12, 4:12] = 255
    Image.fromarray(small).save(cat / "ground_truth" / "scratch" / "000_mask.png")  # half the image size
    soft = np.zeros((64, 64), np.uint8)
    soft[8:24, 8:24] = 255
    soft[7, 8:24] = 90  # anti-aliased edge
    Image.fromarray(soft).save(cat / "ground_truth" / "scratch" / "001_mask.png")
    with pytest.warns(UserWarning) as record:
        ev = evaluate(cat, tmp_path / "eval", small_config(), eval_size=64, backbone=backbone, progress=False)
    text = "\n".join(str(w.message) for w in record)
    assert "000_mask.png: mask is 32x32 but its image is 64x64" in text
    assert "001_mask.png: mask is not binary" in text
    assert ev.metrics["n_anomalous"] == 2
    for group in ("image", "pixel"):
        for k, v in ev.metrics[group].items():
            assert v is None or np.isfinite(v), (group, k)


@pytest.mark.realdata
def test_real_images_and_masks_decode_unchanged(bottle_dir: Path) -> None:
    """On clean MVTec files the hardened decoders change nothing and warn about nothing."""
    masks = sorted((bottle_dir / "ground_truth").rglob("*.png"))[:3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for m in masks:
            image = bottle_dir / "test" / m.parent.name / m.name.replace("_mask", "")
            rgb = load_image_rgb(image)
            with Image.open(image) as im:
                assert np.array_equal(rgb, np.asarray(im.convert("RGB")))
            with Image.open(m) as im:
                assert np.array_equal(load_mask(m, rgb.shape[:2]), np.asarray(im) > 0)
