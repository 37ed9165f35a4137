"""The benchmark's atlas brain extraction of the IXI scans (benchmarks/mri_sources.py).

Skipped without ../shared/data or SimpleITK (a benchmark-only dependency, in the dev extra).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("SimpleITK")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from mri_sources import UNSTRIPPED, stripped_source  # noqa: E402

from codegraph_ad.volumes.cohort import load_source  # noqa: E402


@pytest.mark.realdata
def test_ixi_scan_brain_extracted_by_atlas_registration(mri_dir, tmp_path):
    out = stripped_source("ixi015", tmp_path)
    assert out.parent == tmp_path / "sources"
    img, raw = nib.load(out), nib.load(UNSTRIPPED["ixi015"])
    assert img.shape == raw.shape and np.allclose(img.affine, raw.affine)
    data = np.asarray(img.dataobj)
    brain_ml = float((data > 0).sum()) * float(np.prod(img.header.get_zooms())) / 1000.0
    assert 1000.0 < brain_ml < 1800.0  # an adult brain, not the head (IXI015: ~1340 ml)
    head = np.asarray(raw.dataobj) > 0
    assert (data > 0).sum() < 0.5 * head.sum()  # skull, scalp and neck removed
    src = load_source(out, 3.0)  # passes the builder's skull-stripping check
    assert src.brain.any()
    assert stripped_source("ixi015", tmp_path) == out  # extracted once, then reused
