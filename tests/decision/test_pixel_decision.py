"""pixel_decision.py: the pseudo-mask fit at rank 4, the same one distill/ uses, and its record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import codegraph_ad.distill as distill
import codegraph_ad.distill.config as distill_config
import codegraph_ad.distill.pseudomask as distill_pseudomask
from codegraph_ad.config import PseudoMaskConfig
from codegraph_ad.distill.pseudomask_run import batch_threshold
from codegraph_ad.io.run_folder import read_run_folder
from codegraph_ad.pixel_decision import (
    PixelDecision,
    ThresholdFit,
    batch_fit,
    fit_threshold,
    pooled_sample,
    pseudo_masks,
)
from tests.distill.conftest import make_toy_run


def test_distill_names_are_the_moved_objects():
    """Users' imports from distill keep working and get the one implementation."""
    assert distill.PseudoMaskConfig is distill_config.PseudoMaskConfig is PseudoMaskConfig
    assert distill.fit_threshold is distill_pseudomask.fit_threshold is fit_threshold
    assert distill.pseudo_masks is pseudo_masks and distill.ThresholdFit is ThresholdFit
    assert distill_pseudomask.pooled_sample is pooled_sample


def test_streamed_batch_fit_is_the_pseudomask_commands(tmp_path: Path):
    """Maps drawn one at a time in memory (detect) give the fit of the run folder (pseudomask)."""
    toy = make_toy_run(tmp_path)
    run = read_run_folder(toy["run"])
    for config in (PseudoMaskConfig(), PseudoMaskConfig(max_fit_samples=100, beta=0.05, seed=3)):
        maps = (run.load_map(i) for i in range(len(run)))
        assert batch_fit(maps, len(run), config) == batch_threshold(run, config)


def test_record_round_trips_through_json():
    rng = np.random.default_rng(0)
    scores = rng.normal(0.3, 0.02, 5000)
    config = PseudoMaskConfig(beta=0.02)
    pixel = PixelDecision(fit_threshold(scores, config), config)
    back = PixelDecision.from_dict(json.loads(json.dumps(pixel.to_dict())))
    assert back == pixel and back.threshold == pixel.fit.threshold
    amap = rng.normal(0.3, 0.02, (8, 8))
    np.testing.assert_array_equal(pixel.mask(amap), amap > pixel.threshold)
