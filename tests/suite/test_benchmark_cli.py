"""`codegraph-ad benchmark` end to end on a tiny MVTec-layout dataset (56 px, seconds)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from codegraph_ad.cli import main
from codegraph_ad.datasets.synca import build_synca
from tests.datasets.layouts import save, texture

SMALL = ["--image-size", "56", "--quiet", "--no-overlays"]


def _category(root: Path, seed: int, n_good: int = 6, n_bad: int = 2) -> Path:
    """64 px textures; anomalies are 24 px dark squares (they cover whole patches at 56 px)."""
    for i in range(n_good):
        save(root / "test" / "good" / f"{i:03d}.png", texture(seed * 100 + i, 64))
    for i in range(n_bad):
        mask = np.zeros((64, 64), dtype=bool)
        mask[8 + 20 * i : 32 + 20 * i, 16:40] = True
        img = texture(seed * 100 + 50 + i, 64)
        img[mask] = (30, 20, 10)
        save(root / "test" / "stain" / f"{i:03d}.png", img)
        save(root / "ground_truth" / "stain" / f"{i:03d}_mask.png", mask)
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """alpha: plain; beta: SynCA-style, 3 perturbed copies of one anomalous image (a consistent anomaly)."""
    base = tmp_path_factory.mktemp("bench")
    _category(base / "data" / "alpha", 0)
    build_synca(_category(base / "src" / "beta", 1), base / "data" / "beta", n_copies=3, source="stain/000")
    return base / "data"


@pytest.fixture(scope="module")
def first_run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_out") / "out"
    code = main(["benchmark", "--dataset", "mvtec_ad", "--root", str(dataset), "--methods", "musc,codegraph",
                 "--out", str(out), *SMALL])
    return code, out


def test_benchmark_writes_tables_for_every_category_and_method(first_run):
    code, out = first_run
    assert code == 0
    rows = list(csv.DictReader(io.StringIO((out / "summary.csv").read_text())))
    assert [(r["category"], r["method"]) for r in rows] == [
        ("alpha", "musc"), ("alpha", "codegraph"), ("beta", "musc"), ("beta", "codegraph"),
        ("mean", "musc"), ("mean", "codegraph")]
    for r in rows:
        for col in ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max",
                    "pixel_aupro"):
            assert 0.0 <= float(r[col]) <= 1.0
        assert float(r["wall_s"]) > 0
    assert all(r["exclusion_rate"] == "" for r in rows if r["method"] == "musc")
    assert all(0.0 <= float(r["exclusion_rate"]) <= 1.0 for r in rows if r["method"] == "codegraph")
    mean = [r for r in rows if r["category"] == "mean" and r["method"] == "musc"][0]
    per_cat = [float(r["pixel_aupro"]) for r in rows if r["category"] != "mean" and r["method"] == "musc"]
    assert float(mean["pixel_aupro"]) == pytest.approx(np.mean(per_cat), abs=1e-5)
    beta = json.loads((out / "categories" / "beta.json").read_text())
    assert beta["n_images"] == 11 and beta["n_anomalous"] == 5
    cons = beta["methods"]["codegraph"]["consistency"]
    assert cons["n_patches"] == 11 * 16
    if cons["n_consistent_patches"]:
        assert 0.0 <= cons["capture_rate"] <= 1.0
    assert beta["configs"]["musc"]["msm"]["q"] == 0.3 and beta["configs"]["codegraph"]["graph"]["final_q"] == 0.3
    assert beta["consistency_config"]["normal_population"] == "patches of normal images"
    assert beta["consistency_config"]["musc_q"] == 0.3


def test_markdown_keeps_published_numbers_in_their_own_section(first_run):
    _, out = first_run
    md = (out / "summary.md").read_text()
    measured, published = md.split("## Published numbers (reference only, not measured by this run)")
    assert "| alpha | musc |" in measured and "| **mean** | codegraph |" in measured
    assert "clip_vitl14_336" not in measured and "99.92" not in measured
    assert "No published numbers for this dataset with this run's backbone." in published
    assert "| bottle | musc | clip_vitl14_336 | 518 | 99.92 |" in published
    header = "| Category | Method | AUROC-cls | F1-cls | AP-cls | AUROC-seg | F1-seg | AP-seg | PRO-seg |"
    assert header in measured


def test_rerun_resumes_finished_categories_and_refuses_other_settings(first_run, dataset, capsys):
    _, out = first_run
    before = (out / "categories" / "alpha.json").read_text()
    capsys.readouterr()
    assert main(["benchmark", "--dataset", "mvtec_ad", "--root", str(dataset), "--out", str(out), *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "alpha: done earlier" in printed and "beta: done earlier" in printed
    assert (out / "categories" / "alpha.json").read_text() == before
    assert main(["benchmark", "--dataset", "mvtec_ad", "--root", str(dataset), "--out", str(out), "--q", "0.2",
                 *SMALL]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_category_subset_single_method_and_saved_runs(dataset, tmp_path):
    out = tmp_path / "one"
    assert main(["benchmark", "--dataset", "mvtec_ad", "--root", str(dataset), "--categories", "alpha",
                 "--methods", "musc", "--save-runs", "--out", str(out), *SMALL]) == 0
    rows = list(csv.DictReader(io.StringIO((out / "summary.csv").read_text())))
    assert [(r["category"], r["method"]) for r in rows] == [("alpha", "musc"), ("mean", "musc")]
    assert (out / "runs" / "alpha" / "musc" / "run.json").is_file()
    assert (out / "runs" / "alpha" / "musc" / "metrics.json").is_file()


def test_bad_arguments_are_clear(dataset, tmp_path, capsys):
    base = ["benchmark", "--root", str(dataset), "--out", str(tmp_path / "x"), *SMALL]
    assert main([*base, "--dataset", "imagenet"]) == 2
    assert "known datasets" in capsys.readouterr().err
    assert main([*base, "--dataset", "mvtec_ad", "--methods", "patchcore"]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main([*base, "--dataset", "mvtec_ad", "--categories", "gamma"]) == 2
    assert "no category 'gamma'" in capsys.readouterr().err
    assert main([*base, "--dataset", "mvtec_ad", "--method", "musc"]) == 2
    assert "--methods" in capsys.readouterr().err
