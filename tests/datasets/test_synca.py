"""SynCA builder: layout, manifest, determinism, the thesis's shares, refusals, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from codegraph_ad.cli import main
from codegraph_ad.datasets import read_mvtec_category
from codegraph_ad.datasets.synca import SynCAConfig, build_synca, build_synca_dataset, default_copies, plan_copies
from codegraph_ad.errors import InputError

from .layouts import mvtec_category


@pytest.fixture
def category(tmp_path):
    return mvtec_category(tmp_path / "src" / "widget", n_good=8, defects={"crack": 3, "hole": 2}, size=40)


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_build_writes_a_full_mvtec_category_with_copies(category, tmp_path):
    result = build_synca(category, tmp_path / "out", n_copies=5, source="crack/001", seed=3)
    out = result.out_dir
    samples = read_mvtec_category(out)
    assert len(samples) == 13 + 5
    copies = [s for s in samples if s.image_path.stem.startswith("synca_")]
    assert [s.name for s in copies] == [f"crack/synca_{i:03d}" for i in range(5)]
    assert all(s.mask_paths and s.mask_paths[0].name == f"{s.image_path.stem}_mask.png" for s in copies)
    for rel, data in _files(category).items():  # originals copied byte for byte
        assert (out / rel).read_bytes() == data
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["name"] == "crack/001" and manifest["seed"] == 3 and manifest["n_copies"] == 5
    assert [c["image"] for c in manifest["copies"]] == [f"test/crack/synca_{i:03d}.png" for i in range(5)]
    assert set(manifest["copies"][0]) >= {"angle_deg", "shift", "jitter", "noise_sigma", "salt_pepper"}
    # every copy keeps its defect: the mask is non-empty and the dark defect colour lies under it
    for s in copies:
        img = np.asarray(Image.open(s.image_path)).astype(int)
        mask = np.asarray(Image.open(s.mask_paths[0])) > 127
        assert mask.sum() > 10 and img[mask].mean() < img[~mask].mean() - 40


def test_same_seed_gives_identical_bytes_other_seed_differs(category, tmp_path):
    build_synca(category, tmp_path / "a", n_copies=4, seed=7)
    build_synca(category, tmp_path / "b", n_copies=4, seed=7)
    build_synca(category, tmp_path / "c", n_copies=4, seed=8)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b
    assert a != c


def test_default_count_and_the_thesis_shares(category, tmp_path):
    assert default_copies(83) == 12 and default_copies(2) == 1
    result = build_synca(category, tmp_path / "out")  # 13 images -> round(1.95) = 2 copies
    assert len(result.copies) == 2
    plans = plan_copies(20, seed=0)
    assert sum(p.jitter is not None for p in plans) == 16  # 80%
    assert sum(p.noise_sigma is not None for p in plans) == 4  # 20%
    cfg = SynCAConfig()
    assert all(abs(p.angle_deg) <= cfg.max_rotation_deg for p in plans)
    assert all(max(abs(v) for v in p.shift) <= cfg.max_translation for p in plans)
    assert all(p.salt_pepper == cfg.salt_pepper for p in plans if p.noise_sigma is not None)


def test_default_source_is_a_seeded_anomalous_image(category, tmp_path):
    r1 = build_synca(category, tmp_path / "a", n_copies=1, seed=11)
    r2 = build_synca(category, tmp_path / "b", n_copies=1, seed=11)
    assert r1.source == r2.source and r1.source.split("/")[0] in {"crack", "hole"}


def test_refusals_are_clear(category, tmp_path):
    with pytest.raises(InputError, match="not found; give it as defect/stem"):
        build_synca(category, tmp_path / "o1", source="crack/999")
    with pytest.raises(InputError, match="not an anomalous image"):
        build_synca(category, tmp_path / "o2", source="good/000")
    with pytest.raises(InputError, match="outside the source"):
        build_synca(category, category / "synca")
    other = tmp_path / "busy"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="holds no SynCA manifest"):
        build_synca(category, other)
    build_synca(category, tmp_path / "done", n_copies=1)
    with pytest.raises(InputError, match="--overwrite"):
        build_synca(category, tmp_path / "done", n_copies=1)
    build_synca(category, tmp_path / "done", n_copies=2, overwrite=True)
    assert len(list((tmp_path / "done").rglob("synca_*_mask.png"))) == 2


def test_dataset_builder_keeps_metal_nut_unchanged(tmp_path):
    root = tmp_path / "mvtec"
    mvtec_category(root / "bottle", n_good=6, defects={"broken": 4}, size=32)
    mvtec_category(root / "metal_nut", n_good=6, defects={"flip": 4}, size=32, seed=1)
    results = build_synca_dataset(root, tmp_path / "synca", n_copies=3)
    assert [len(r.copies) if r.source else 0 for r in results] == [3, 0]
    assert len(read_mvtec_category(tmp_path / "synca" / "bottle")) == 13
    assert len(read_mvtec_category(tmp_path / "synca" / "metal_nut")) == 10
    top = json.loads((tmp_path / "synca" / "manifest.json").read_text())
    assert top["categories"]["metal_nut"]["n_copies"] == 0 and top["categories"]["bottle"]["n_copies"] == 3


def test_make_synca_cli(category, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["make-synca", str(category), "--out", str(out), "--copies", "3", "--source", "hole/000",
                 "--seed", "2"]) == 0
    assert "13 originals + 3 copies of hole/000" in capsys.readouterr().out
    assert len(list((out / "test" / "hole").glob("synca_*.png"))) == 3
    assert main(["make-synca", str(category), "--out", str(out), "--copies", "3"]) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.realdata
def test_real_bottle_copy_keeps_mask_on_the_defect(bottle_dir, tmp_path):
    result = build_synca(bottle_dir, tmp_path / "synca", n_copies=2, source="broken_large/000")
    samples = read_mvtec_category(result.out_dir)
    assert len(samples) == 85
    copies = [s for s in samples if s.image_path.stem.startswith("synca_")]
    assert len(copies) == 2
    for s in copies:
        mask = np.asarray(Image.open(s.mask_paths[0])) > 127
        assert mask.shape == (900, 900) and 0.002 < mask.mean() < 0.2
