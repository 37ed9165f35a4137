"""Outputs: written to a temporary name and renamed, manifest last, nothing half-done left."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import codegraph_ad.io.atomic as atomic
import codegraph_ad.io.run_folder as run_folder
from codegraph_ad.api import detect, evaluate
from codegraph_ad.cli import main
from codegraph_ad.errors import InputError
from codegraph_ad.io.run_folder import MANIFEST

from . import corpus
from .conftest import small_config


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def renames(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record every os.replace the atomic writer does, in order."""
    log: list[tuple[str, str]] = []
    real = os.replace

    def spy(src, dst):  # noqa: ANN001, ANN202
        log.append((str(src), str(dst)))
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", spy)
    return log


def test_every_output_is_renamed_into_place_manifest_last(tmp_path: Path, backbone, renames) -> None:  # noqa: ANN001
    folder = tmp_path / "imgs"
    corpus.normal_set(folder, 4)
    out = tmp_path / "out"
    detect(folder, out, small_config("codegraph"), backbone=backbone, progress=False)
    written = _files(out)
    assert {"run.json", "scores.csv", "scores.json", "patch_scores.npy", "excluded.npy"} <= written
    assert any(f.startswith("maps/") for f in written) and any(f.startswith("overlays/") for f in written)
    targets = [str(Path(dst).relative_to(out)) for src, dst in renames if Path(dst).is_relative_to(out)]
    assert set(targets) == written  # no output was written in place
    assert all(Path(src).name.startswith(".") and src.endswith(".tmp") for src, _ in renames)
    # the manifest is the last result written; report.html, a view built from the
    # finished files, may only come after it
    assert [t for t in targets if t != "report.html"][-1] == MANIFEST


def test_evaluate_writes_manifest_last(tmp_path: Path, backbone, renames) -> None:  # noqa: ANN001
    cat = tmp_path / "cat"
    corpus.normal_set(cat / "test" / "good", 3)
    (cat / "test" / "bad").mkdir(parents=True)
    (cat / "ground_truth" / "bad").mkdir(parents=True)
    corpus.save_png(cat / "test" / "bad" / "000.png", corpus.textured(9, defect=True))
    mask = np.zeros((64, 64, 3), np.uint8)
    mask[8:24, 8:24] = 255
    corpus.save_png(cat / "ground_truth" / "bad" / "000_mask.png", mask)
    out = tmp_path / "eval"
    evaluate(cat, out, small_config(), eval_size=32, backbone=backbone, progress=False, overlays=False)
    targets = [Path(dst).name for _, dst in renames if Path(dst).is_relative_to(out)]
    assert "metrics.json" in targets and [t for t in targets if t != "report.html"][-1] == MANIFEST


def test_occupied_folder_is_refused_unless_overwrite(tmp_path: Path, backbone,  # noqa: ANN001
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "imgs"
    corpus.normal_set(folder, 4)
    out = tmp_path / "out"
    detect(folder, out, small_config(), backbone=backbone, progress=False, overlays=False)
    first = (out / "scores.csv").read_bytes()
    with pytest.raises(InputError, match="--overwrite"):
        detect(folder, out, small_config(), backbone=backbone, progress=False)
    rc = main(["detect", str(folder), "--out", str(out), "--image-size", "56", "--quiet"])
    assert rc == 2 and "holds the results of another run" in capsys.readouterr().err
    assert (out / "scores.csv").read_bytes() == first

    # A folder holding only per-image maps (a killed run) is refused as well.
    partial = tmp_path / "partial"
    (partial / "maps").mkdir(parents=True)
    np.save(partial / "maps" / "x.npy", np.zeros(3))
    with pytest.raises(InputError, match="--overwrite"):
        detect(folder, partial, small_config(), backbone=backbone, progress=False)


def test_overwrite_replaces_all_earlier_outputs(tmp_path: Path, backbone) -> None:  # noqa: ANN001
    old, new = tmp_path / "old", tmp_path / "new"
    corpus.normal_set(old, 4)
    corpus.normal_set(new, 3, start_seed=40)
    out = tmp_path / "out"
    detect(old, out, small_config("codegraph"), backbone=backbone, progress=False)
    (out / "notes.txt").write_text("mine")
    res = detect(new, out, small_config(), backbone=backbone, progress=False, overwrite=True)
    assert sorted(p.stem for p in (out / "maps").iterdir()) == sorted(res.names)
    assert sorted(p.stem for p in (out / "overlays").iterdir()) == sorted(res.names)
    assert not (out / "excluded.npy").exists()  # the MuSc run writes none; CoDeGraph's is gone
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / MANIFEST).read_text())["names"] == res.names


class _Stop(KeyboardInterrupt):
    pass


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """Make the n-th ``.npy`` write of the run-folder writer raise like Ctrl-C."""
    real = run_folder.write_npy
    count = {"n": 0}

    def flaky(path, array):  # noqa: ANN001, ANN202
        count["n"] += 1
        if count["n"] == n:
            raise _Stop()
        return real(path, array)

    monkeypatch.setattr(run_folder, "write_npy", flaky)


def test_interrupted_write_leaves_nothing_that_looks_complete(tmp_path: Path, backbone,  # noqa: ANN001
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "imgs"
    corpus.normal_set(folder, 4)
    _interrupt_after(monkeypatch, 3)
    out = tmp_path / "fresh"
    with pytest.raises(_Stop):
        detect(folder, out, small_config(), backbone=backbone, progress=False)
    assert not out.exists()  # created by the run, removed with its partial outputs

    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    _interrupt_after(monkeypatch, 3)
    with pytest.raises(_Stop):
        detect(folder, kept, small_config(), backbone=backbone, progress=False)
    assert _files(kept) == {"notes.txt"}


def test_interrupted_overwrite_removes_old_manifest(tmp_path: Path, backbone,  # noqa: ANN001
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "imgs"
    corpus.normal_set(folder, 4)
    out = tmp_path / "out"
    detect(folder, out, small_config(), backbone=backbone, progress=False, overlays=False)
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(_Stop):
        detect(folder, out, small_config(), backbone=backbone, progress=False, overwrite=True)
    assert not (out / MANIFEST).exists() and not (out / "scores.csv").exists()
    assert not [f for f in _files(out) if not Path(f).name.startswith(".")]


def test_failed_computation_keeps_earlier_results(tmp_path: Path, backbone) -> None:  # noqa: ANN001
    folder = tmp_path / "imgs"
    corpus.normal_set(folder, 4)
    out = tmp_path / "out"
    detect(folder, out, small_config(), backbone=backbone, progress=False, overlays=False)
    before = {f: (out / f).read_bytes() for f in _files(out)}
    corpus.write_zero_byte(folder)
    with pytest.raises(InputError, match="empty.png"):
        detect(folder, out, small_config(), backbone=backbone, progress=False, overwrite=True)
    assert {f: (out / f).read_bytes() for f in _files(out)} == before
