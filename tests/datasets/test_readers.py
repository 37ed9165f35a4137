"""Each reader on a tiny fixture written in its official layout; MVTec AD also on real bottle."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codegraph_ad.datasets import (
    get_reader,
    list_categories,
    list_datasets,
    read_btad_category,
    read_category,
    read_labelled_folder,
    read_loco_category,
    read_manta_category,
    read_mvtec_category,
    read_visa_category,
)
from codegraph_ad.datasets.manta import choose_view, extract_manta_views, view_bounds
from codegraph_ad.errors import InputError
from codegraph_ad.io.images import load_mask

from .layouts import mvtec_category, save, square_mask, texture, with_defect


def _counts(samples) -> Counter:
    return Counter(s.defect for s in samples)


# --- MVTec AD / MPDD -------------------------------------------------------------------------


def test_mvtec_reader_on_synthetic_category(tmp_path):
    cat = mvtec_category(tmp_path / "widget", n_good=3, defects={"crack": 2, "hole": 1})
    (cat / "ground_truth" / "hole" / "000_mask.png").unlink()  # image-level label only
    samples = read_mvtec_category(cat)
    assert _counts(samples) == {"good": 3, "crack": 2, "hole": 1}
    assert [s.label for s in samples if s.defect == "good"] == [0, 0, 0]
    crack = [s for s in samples if s.defect == "crack"]
    assert all(s.label == 1 and s.mask_paths[0].name.endswith("_mask.png") for s in crack)
    assert [s for s in samples if s.defect == "hole"][0].mask_paths == ()
    assert read_category("mpdd", tmp_path, "widget") == samples


@pytest.mark.realdata
def test_mvtec_reader_on_real_bottle(bottle_dir):
    samples = read_mvtec_category(bottle_dir)
    assert _counts(samples) == {"good": 20, "broken_large": 20, "broken_small": 22, "contamination": 21}
    assert sum(len(s.mask_paths) for s in samples) == 63
    assert all(m.is_file() for s in samples for m in s.mask_paths)
    assert read_category("mvtec_ad", bottle_dir.parent, "bottle") == samples
    assert list_categories("mvtec_ad", bottle_dir.parent) == ["bottle"]


# --- VisA ------------------------------------------------------------------------------------


def _visa(root: Path) -> Path:
    rows = ["object,split,label,image,mask"]
    for obj in ("candle", "pcb1"):
        data = root / obj / "Data"
        for i in range(4):
            save(data / "Images" / "Normal" / f"{i:04d}.JPG", texture(i))
            rows.append(f"{obj},{'train' if i < 2 else 'test'},normal,{obj}/Data/Images/Normal/{i:04d}.JPG,")
        for i in range(2):
            mask = square_mask(4, 4, 6)
            save(data / "Images" / "Anomaly" / f"{i:03d}.JPG", with_defect(texture(50 + i), mask))
            save(data / "Masks" / "Anomaly" / f"{i:03d}.png", mask)
            rows.append(f"{obj},test,anomaly,{obj}/Data/Images/Anomaly/{i:03d}.JPG,{obj}/Data/Masks/Anomaly/{i:03d}.png")
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")
    return root


def test_visa_reader_uses_the_split_csv(tmp_path):
    root = _visa(tmp_path / "VisA")
    samples = read_visa_category(root, "candle")
    assert [(s.label, s.image_path.name) for s in samples] == [
        (0, "0002.JPG"), (0, "0003.JPG"), (1, "000.JPG"), (1, "001.JPG")]
    assert all(s.mask_paths[0].name == s.image_path.stem + ".png" for s in samples if s.label)
    assert list_categories("visa", root) == ["candle", "pcb1"]
    assert read_category("visa", root, "pcb1")[0].image_path.parts[-5] == "pcb1"
    with pytest.raises(InputError, match="no rows for object 'nope'"):
        read_visa_category(root, "nope")


def test_visa_reader_without_csv_uses_every_image_and_warns(tmp_path):
    root = _visa(tmp_path / "VisA")
    (root / "split_csv" / "1cls.csv").unlink()
    with pytest.warns(UserWarning, match="not the official test split"):
        samples = read_visa_category(root, "candle")
    assert Counter(s.label for s in samples) == {0: 4, 1: 2}
    assert all(s.mask_paths for s in samples if s.label)


def test_visa_csv_with_wrong_columns_is_named(tmp_path):
    root = _visa(tmp_path / "VisA")
    (root / "split_csv" / "1cls.csv").write_text("object,split,image\ncandle,test,x.png\n")
    with pytest.raises(InputError, match="missing column"):
        read_visa_category(root, "candle")


# --- MVTec LOCO ------------------------------------------------------------------------------


def test_loco_reader_unites_a_folder_of_masks(tmp_path):
    cat = tmp_path / "loco" / "pushpins"
    for i in range(2):
        save(cat / "test" / "good" / f"{i:03d}.png", texture(i))
    for defect in ("logical_anomalies", "structural_anomalies"):
        save(cat / "test" / defect / "000.png", texture(9))
        save(cat / "ground_truth" / defect / "000" / "000.png", square_mask(2, 2, 5))
        save(cat / "ground_truth" / defect / "000" / "001.png", square_mask(20, 20, 5))
    save(cat / "test" / "logical_anomalies" / "001.png", texture(10))  # no ground-truth folder
    samples = read_loco_category(cat)
    assert _counts(samples) == {"good": 2, "logical_anomalies": 2, "structural_anomalies": 1}
    first = [s for s in samples if s.name == "logical_anomalies/000"][0]
    assert [m.name for m in first.mask_paths] == ["000.png", "001.png"]
    assert [s for s in samples if s.name == "logical_anomalies/001"][0].mask_paths == ()
    assert read_category("mvtec_loco", tmp_path / "loco", "pushpins") == samples


# --- BTAD ------------------------------------------------------------------------------------


def test_btad_reader_handles_bmp_and_png_masks(tmp_path):
    root = tmp_path / "BTech"
    for product, ext in (("01", ".bmp"), ("03", ".bmp")):
        cat = root / product
        for i in range(3):
            save(cat / "test" / "ok" / f"{i:04d}{ext}", texture(i))
        for i in range(2):
            m = square_mask(3, 3, 6)
            save(cat / "test" / "ko" / f"{i:04d}{ext}", with_defect(texture(20 + i), m))
            save(cat / "ground_truth" / "ko" / f"{i:04d}{'.png' if product == '01' else '.bmp'}", m)
        save(cat / "train" / "ok" / "0000.bmp", texture(99))
    assert list_categories("btad", root) == ["01", "03"]
    s01 = read_btad_category(root / "01")
    assert _counts(s01) == {"good": 3, "ko": 2}
    assert {m.suffix for s in s01 for m in s.mask_paths} == {".png"}
    s03 = read_category("btad", root, "03")
    assert {m.suffix for s in s03 for m in s.mask_paths} == {".bmp"}
    assert load_mask(s03[-1].mask_paths[0], (32, 32)).sum() == 36


# --- MANTA -----------------------------------------------------------------------------------


def _manta(root: Path, n_views: int = 5, vertical: bool = False) -> Path:
    """capsule: 2 normal, 2 anomalous tiled images; views of 16x16 (16 x 80 strips)."""
    cat = root / "pharma" / "capsule"
    side = 16

    def tiled(seed: int) -> np.ndarray:
        return np.concatenate([texture(seed * 10 + v, side) for v in range(n_views)], axis=0 if vertical else 1)

    def tiled_mask(areas: list[int]) -> np.ndarray:
        views = [square_mask(0, 0, a, side) if a else np.zeros((side, side), bool) for a in areas]
        return np.concatenate(views, axis=0 if vertical else 1)
    for i in range(2):
        save(cat / "test" / "good" / f"{i:03d}.png", tiled(i))
    save(cat / "test" / "crack" / "000.png", tiled(5))
    save(cat / "ground_truth" / "crack" / "000.png", tiled_mask([2, 0, 0, 6, 3]))  # largest: view 3
    save(cat / "test" / "crack" / "001.png", tiled(6))
    save(cat / "ground_truth" / "crack" / "001_mask.png", tiled_mask([0, 0, 0, 0, 0]))  # invisible: middle
    return root


@pytest.mark.parametrize("vertical", [False, True])
def test_manta_reader_splits_views_and_selects_them(tmp_path, vertical):
    root = _manta(tmp_path / "MANTA", vertical=vertical)
    assert list_categories("manta", root) == ["pharma/capsule"]
    views = extract_manta_views(root / "pharma" / "capsule", tmp_path / "views")
    by_name = {v.sample.name: v for v in views}
    assert by_name["good/000"].view == 2 and by_name["good/001"].view == 2
    assert by_name["crack/000"].view == 3 and by_name["crack/000"].mask_area == 36
    assert by_name["crack/000"].view_areas == (4, 0, 0, 36, 9)
    assert by_name["crack/001"].view == 2
    for v in views:
        img = np.asarray(Image.open(v.sample.image_path))
        assert img.shape == (16, 16, 3)
        src = np.asarray(Image.open(v.source.image_path))
        a, b = view_bounds(80, 5)[v.view]
        expected = src[a:b] if vertical else src[:, a:b]
        assert np.array_equal(img, expected)
    mask = load_mask(by_name["crack/000"].sample.mask_paths[0], (16, 16))
    assert mask.sum() == 36
    samples = read_category("manta", root, "capsule", tmp_path / "views")  # leaf name also accepted
    assert [s.name for s in samples] == [v.sample.name for v in views]


def test_manta_views_are_reused_when_sources_are_unchanged(tmp_path):
    root = _manta(tmp_path / "MANTA")
    cat = root / "pharma" / "capsule"
    first = read_manta_category(cat, tmp_path / "views")
    stamp = first[0].image_path.stat().st_mtime_ns
    again = read_manta_category(cat, tmp_path / "views")
    assert again == first and again[0].image_path.stat().st_mtime_ns == stamp


def test_manta_refuses_to_write_into_the_data_folder(tmp_path):
    root = _manta(tmp_path / "MANTA")
    with pytest.raises(InputError, match="must not lie inside"):
        read_manta_category(root / "pharma" / "capsule", root / "pharma" / "capsule" / "views")


def test_view_selection_rules():
    assert choose_view(0, (0, 0, 0, 0, 0)) == 2
    assert choose_view(0, (9, 0, 0, 0, 0)) == 2  # normal images: always the middle view
    assert choose_view(1, (0, 5, 5, 1, 0)) == 1  # ties: the first largest
    assert choose_view(1, (0, 0, 0, 0, 0)) == 2
    assert view_bounds(11, 5) == [(0, 2), (2, 4), (4, 7), (7, 9), (9, 11)]


# --- generic labelled folder -----------------------------------------------------------------


def test_labelled_folder_reader(tmp_path):
    root = tmp_path / "parts"
    for i in range(3):
        save(root / "good" / f"n{i}.png", texture(i))
    m = square_mask(2, 2, 8)
    save(root / "scratch" / "a.png", with_defect(texture(7), m))
    save(root / "scratch" / "b.jpg", texture(8))  # no mask
    save(root / "dent" / "line2" / "c.png", with_defect(texture(9), m))
    save(root / "masks" / "scratch" / "a_mask.png", m)
    save(root / "masks" / "dent" / "line2" / "c.png", m)
    samples = read_labelled_folder(root)
    assert [(s.defect, s.image_path.name, len(s.mask_paths)) for s in samples] == [
        ("good", "n0.png", 0), ("good", "n1.png", 0), ("good", "n2.png", 0),
        ("dent", "c.png", 1), ("scratch", "a.png", 1), ("scratch", "b.jpg", 0)]
    assert [s.label for s in samples] == [0, 0, 0, 1, 1, 1]
    assert list_categories("folder", root) == ["parts"]
    assert read_category("folder", root, "parts") == samples
    assert list_categories("folder", tmp_path) == ["parts"]
    assert read_category("folder", tmp_path, "parts") == samples


# --- registry --------------------------------------------------------------------------------


def test_registry_names_and_errors(tmp_path):
    assert {"mvtec_ad", "visa", "mvtec_loco", "mpdd", "btad", "manta", "folder", "synca", "consistad"} <= set(
        list_datasets())
    assert get_reader("mvtec").name == "mvtec_ad"
    with pytest.raises(InputError, match="known datasets: mvtec_ad"):
        get_reader("imagenet")
    mvtec_category(tmp_path / "a")
    with pytest.raises(InputError, match=r"no category 'b' .*found: a"):
        read_category("mvtec_ad", tmp_path, "b")
    with pytest.raises(InputError, match="does not exist"):
        list_categories("mvtec_ad", tmp_path / "missing")
