"""ConsistAD builder on tiny MVTec AD, MVTec LOCO and MANTA fixtures."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from codegraph_ad.cli import main
from codegraph_ad.datasets import list_categories, read_category, read_mvtec_category
from codegraph_ad.datasets.base import LabelledSample
from codegraph_ad.datasets.consistad import ConsistADConfig, build_consistad, sample_manta
from codegraph_ad.datasets.manta import MantaView
from codegraph_ad.errors import InputError
from codegraph_ad.io.images import load_mask

from .layouts import mvtec_category, save, square_mask, texture

SMALL = ConsistADConfig(mvtec=("cable", "pill"), loco=("pushpins",), manta=("capsule",),
                        manta_normal=3, manta_anomalous=3, manta_largest=1)


def _sources(tmp_path: Path) -> tuple[Path, Path, Path]:
    mvtec = tmp_path / "mvtec"
    for i, c in enumerate(("cable", "metal_nut", "pill")):
        mvtec_category(mvtec / c, n_good=2, defects={"flip": 2}, seed=i)
    loco = tmp_path / "loco"
    for c in ("breakfast_box", "pushpins"):
        cat = loco / c
        save(cat / "test" / "good" / "000.png", texture(1))
        save(cat / "test" / "logical_anomalies" / "000.png", texture(2))
        save(cat / "ground_truth" / "logical_anomalies" / "000" / "000.png", square_mask(0, 0, 4))
        save(cat / "ground_truth" / "logical_anomalies" / "000" / "001.png", square_mask(10, 10, 4))
    manta = tmp_path / "manta"
    for c in ("capsule", "coated_tablet", "coffee_bean", "red_tablet"):
        cat = manta / "pharma" / c
        for i in range(5):
            save(cat / "test" / "good" / f"{i:03d}.png", texture(i, 16, 80))
        for i, area in enumerate((3, 7, 5, 2, 6)):  # mask side per anomalous image, in view 4
            save(cat / "test" / "crack" / f"{i:03d}.png", texture(50 + i, 16, 80))
            save(cat / "ground_truth" / "crack" / f"{i:03d}.png", square_mask(0, 64, area, 16, 80))
    return mvtec, loco, manta


def test_build_consistad_on_small_fixtures(tmp_path):
    mvtec, loco, manta = _sources(tmp_path)
    out = tmp_path / "consistad"
    result = build_consistad(mvtec, loco, manta, out, seed=1, config=SMALL)
    assert list_categories("consistad", out) == ["cable", "capsule", "pill", "pushpins"]
    assert not (out / ".views").exists()
    # MVTec AD classes: byte-identical copies
    for rel in ("test/flip/000.png", "ground_truth/flip/000_mask.png"):
        assert (out / "cable" / rel).read_bytes() == (mvtec / "cable" / rel).read_bytes()
    # LOCO: the folder of masks became one united MVTec-style mask
    loco_samples = read_mvtec_category(out / "pushpins")
    anomalous = [s for s in loco_samples if s.label][0]
    assert anomalous.mask_paths[0].name == "000_mask.png"
    assert load_mask(anomalous.mask_paths[0], (32, 32)).sum() == 32
    # MANTA: 3 normal (middle views) + 3 anomalous: the largest-mask one plus 2 random
    capsule = read_category("consistad", out, "capsule")
    assert Counter(s.label for s in capsule) == {0: 3, 1: 3}
    files = result.classes["capsule"]["files"]
    assert [f["why"] for f in files].count("largest") == 1
    largest = [f for f in files if f["why"] == "largest"][0]
    assert largest["name"] == "crack/001" and largest["mask_area"] == 49 and largest["view"] == 4
    assert all(f["view"] == 2 for f in files if f["why"] == "normal")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "consistad" and manifest["seed"] == 1
    assert manifest["classes"]["pushpins"]["source"] == "loco"


def test_consistad_is_seeded(tmp_path):
    mvtec, loco, manta = _sources(tmp_path)
    a = build_consistad(mvtec, loco, manta, tmp_path / "a", seed=4, config=SMALL)
    b = build_consistad(mvtec, loco, manta, tmp_path / "b", seed=4, config=SMALL)
    assert [f["name"] for f in a.classes["capsule"]["files"]] == [f["name"] for f in b.classes["capsule"]["files"]]


def test_sample_manta_takes_largest_then_random_without_repeats():
    def view(i: int, label: int, area: int) -> MantaView:
        s = LabelledSample(Path(f"{i}.png"), label, "good" if label == 0 else "x")
        return MantaView(s, s, 2, (0, 0, area, 0, 0))

    views = [view(i, 0, 0) for i in range(10)] + [view(10 + i, 1, a) for i, a in enumerate([5, 9, 1, 9, 3, 7])]
    cfg = ConsistADConfig(manta_normal=4, manta_anomalous=4, manta_largest=2)
    chosen = sample_manta(views, cfg, np.random.default_rng(0))
    largest = [v.sample.image_path.name for v, why in chosen if why == "largest"]
    assert largest == ["11.png", "13.png"]  # areas 9 and 9
    names = [v.sample.image_path.name for v, _ in chosen]
    assert len(names) == len(set(names)) == 8


def test_missing_class_is_named_before_writing(tmp_path):
    mvtec, loco, manta = _sources(tmp_path)
    cfg = ConsistADConfig(mvtec=("cable", "transistor"), loco=(), manta=())
    with pytest.raises(InputError, match="no category 'transistor'"):
        build_consistad(mvtec, loco, manta, tmp_path / "out", config=cfg)
    assert not any((tmp_path / "out").iterdir())


def test_make_consistad_cli_with_default_classes(tmp_path, capsys):
    mvtec, loco, manta = _sources(tmp_path)
    out = tmp_path / "cad"
    with pytest.warns(UserWarning, match="taking 5 / 5 instead of 100 / 50"):  # fixtures are tiny
        assert main(["make-consistad", "--mvtec", str(mvtec), "--loco", str(loco), "--manta", str(manta),
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ConsistAD written to" in printed and "red_tablet" in printed
    assert len(list_categories("consistad", out)) == 9
