"""MuSc on the real MVTec bottle split at a small size (skipped without ../shared/data)."""

from __future__ import annotations

import json

import pytest

from codegraph_ad.cli import main


@pytest.mark.realdata
def test_evaluate_bottle_224_musc(bottle_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["evaluate", str(bottle_dir), "--out", str(out), "--method", "musc", "--image-size", "224",
                 "--no-overlays", "--quiet"])
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())["metrics"]
    assert m["n_images"] == 83 and m["n_anomalous"] == 63
    # Measured 99.84 / 98.45 / 74.73 / 90.53 (docs/benchmarks.md); bounds leave room for
    # library-version noise but catch any real regression.
    assert m["image"]["auroc"] > 0.99
    assert m["pixel"]["auroc"] > 0.98
    assert m["pixel"]["f1_max"] > 0.72
    assert m["pixel"]["aupro"] > 0.88
    assert "pixel aupro" in capsys.readouterr().out


@pytest.mark.realdata
def test_two_bottle_evaluations_give_byte_identical_scores(bottle_dir, tmp_path):
    """Issue 8: the same inputs and configuration give the same score file, byte for byte
    (CoDeGraph, the default method; the second run reads its features from the cache)."""
    args = ["evaluate", str(bottle_dir), "--image-size", "112", "--no-overlays", "--quiet",
            "--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    a = (tmp_path / "a" / "scores.csv").read_bytes()
    assert a == (tmp_path / "b" / "scores.csv").read_bytes()
    assert (tmp_path / "a" / "patch_scores.npy").read_bytes() == (tmp_path / "b" / "patch_scores.npy").read_bytes()
    assert a.count(b"\n") == 84
