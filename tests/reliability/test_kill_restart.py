"""SIGTERM during feature extraction, then a restart that reuses every finished entry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codegraph_ad.cli import main
from codegraph_ad.features.cache import SUFFIX

from . import corpus

N_IMAGES = 12
SIZE = 112  # large enough that one image takes a visible moment, so the kill lands mid-way


def _cli(folder: Path, out: Path, cache_dir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # CODEGRAPH_AD_CACHE: the session's private root
    cmd = [sys.executable, "-m", "codegraph_ad.cli", "detect", str(folder), "--out", str(out),
           "--cache-dir", str(cache_dir),
           "--image-size", str(SIZE), "--method", "musc", "--batch-size", "1", "--threads", "1",
           "--no-overlays", "--quiet"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _entries(root: Path) -> list[Path]:
    return sorted(root.rglob(f"*{SUFFIX}"))


def test_sigterm_then_restart_reuses_cache(tmp_path: Path, private_cache: Path) -> None:
    assert os.environ["CODEGRAPH_AD_CACHE"] == str(private_cache)
    folder = tmp_path / "imgs"
    corpus.normal_set(folder, N_IMAGES, shape=(96, 96))
    cache_root = tmp_path / "features"
    out = tmp_path / "out"

    proc = _cli(folder, out, cache_root)
    deadline = time.monotonic() + 120
    while not _entries(cache_root) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.fail(f"run ended before the kill (rc {proc.returncode}): {proc.communicate()[1][-2000:]}")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err

    cached = _entries(cache_root)
    assert 0 < len(cached) < N_IMAGES, "the kill landed after extraction finished"
    # No partial outputs: the run created the output folder, so it removed it.
    assert not out.exists()
    # The cache holds complete entries and its key file only; no temporary files survive.
    stray = [p for p in cache_root.rglob("*") if p.is_file() and p.suffix not in (SUFFIX, ".json")]
    assert not stray and not [p for p in cache_root.rglob(".*")]
    stamps = {p: p.stat().st_mtime_ns for p in cached}

    # Restart in-process (same CLI entry point, no second interpreter start-up).
    assert main(["detect", str(folder), "--out", str(out), "--cache-dir", str(cache_root),
                 "--image-size", str(SIZE), "--method", "musc", "--no-overlays", "--quiet"]) == 0
    timings = json.loads((out / "run.json").read_text())["timings"]
    assert timings["features_cached"] == len(cached)
    assert timings["features_extracted"] == N_IMAGES - len(cached)
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # none rewritten
    assert len(_entries(cache_root)) == N_IMAGES
    assert len((out / "scores.csv").read_text().splitlines()) == N_IMAGES + 1
