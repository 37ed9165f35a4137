"""Same inputs and configuration give byte-identical results, whatever the file order."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from codegraph_ad.api import detect
from codegraph_ad.cli import main

from . import corpus
from .conftest import IMAGE_SIZE, small_config


def _batch(folder: Path) -> list[Path]:
    paths = corpus.normal_set(folder, 7)
    for i in range(2):
        paths.append(corpus.save_png(folder / f"defect_{i}.png", corpus.textured(70 + i, defect=True)))
    return paths


def test_two_cli_runs_give_byte_identical_scores(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    _batch(folder)
    common = [str(folder), "--image-size", str(IMAGE_SIZE), "--no-overlays", "--quiet",
              "--cache-dir", str(tmp_path / "cache")]  # CoDeGraph: every stage, Leiden included
    assert main(["detect", *common, "--out", str(tmp_path / "a"), "--no-cache"]) == 0
    assert main(["detect", *common, "--out", str(tmp_path / "b")]) == 0  # extracts again, fills the cache
    assert main(["detect", *common, "--out", str(tmp_path / "c")]) == 0  # reads it
    ref = (tmp_path / "a" / "scores.csv").read_bytes()
    for run in "bc":
        assert (tmp_path / run / "scores.csv").read_bytes() == ref, run
        assert (tmp_path / run / "patch_scores.npy").read_bytes() == (tmp_path / "a" / "patch_scores.npy").read_bytes()


@pytest.mark.parametrize("method", ["musc", "codegraph"])
def test_file_order_changes_no_score(tmp_path: Path, backbone, method: str) -> None:  # noqa: ANN001
    paths = _batch(tmp_path / "imgs")
    shuffled = paths[:]
    random.Random(3).shuffle(shuffled)
    assert shuffled != paths
    cfg = small_config(method)
    a = detect(paths, None, cfg, backbone=backbone, progress=False, cache=False)
    b = detect(shuffled, None, cfg, backbone=backbone, progress=False, cache=False)
    ia = {p: i for i, p in enumerate(a.paths)}
    ib = {p: i for i, p in enumerate(b.paths)}
    for p in paths:
        assert a.scores.image_scores[ia[p]] == b.scores.image_scores[ib[p]], p.name
        assert np.array_equal(a.scores.patch_scores[ia[p]], b.scores.patch_scores[ib[p]]), p.name
    if method == "codegraph":
        assert a.scores.excluded is not None and b.scores.excluded is not None
        for p in paths:
            assert np.array_equal(a.scores.excluded[ia[p]], b.scores.excluded[ib[p]]), p.name
