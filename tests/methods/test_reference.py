"""methods/reference.py: a new image is scored against a run's images as a batch member would be."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codegraph_ad.config import EngineConfig, LNAMDConfig, MSMConfig, RsCINConfig, RunConfig
from codegraph_ad.errors import ConfigError, InputError
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.methods import MuSc
from codegraph_ad.methods.first_pass import compute_first_pass
from codegraph_ad.methods.reference import ReferenceSet

GRID = (5, 5)


def _batch(n: int = 9, seed: int = 0) -> FeatureSet:
    g = torch.Generator().manual_seed(seed)
    layers = torch.randn(n, 2, GRID[0] * GRID[1], 12, generator=g)
    return FeatureSet(layers, torch.randn(n, 8, generator=g), GRID)


def _config(q: float = 0.3, **engine) -> RunConfig:
    return RunConfig(method="musc", lnamd=LNAMDConfig((1, 3)), msm=MSMConfig(q),
                     engine=EngineConfig(memory_budget_mb=64, **engine))


def _others(n: int, i: int) -> list[int]:
    return [j for j in range(n) if j != i]


@pytest.mark.parametrize("q", [0.3, 0.6, 1.0])
@pytest.mark.parametrize("screening", [100.0, 50.0])
@pytest.mark.parametrize("window", [None, 1])
def test_a_batch_member_scored_against_the_others_gets_its_musc_score(q, screening, window):
    feats = _batch()
    config = _config(q, screening_percent=screening, window=window)
    batch = MuSc.from_config(config).fit_predict(feats)
    for i in range(feats.n_images):
        ref = ReferenceSet.from_features(feats.subset(_others(feats.n_images, i)), config)
        new = ref.score_new(feats.subset([i]))
        torch.testing.assert_close(new.patch_scores[0], batch.patch_scores[i], rtol=1e-5, atol=1e-6)
        assert new.image_scores[0] == pytest.approx(batch.raw_image_scores[i], rel=1e-5)


@pytest.mark.parametrize("with_cls", [True, False])
def test_a_batch_member_of_a_fixed_k_run_keeps_k_references(with_cls):
    feats = _batch(12, seed=4)
    if not with_cls:  # the plan falls back to mean-pooled last-layer tokens
        feats = FeatureSet(feats.layers, None, GRID)
    config = _config(0.3, references=5, random_references=0.0)
    batch = MuSc.from_config(config).fit_predict(feats)
    for i in range(feats.n_images):
        ref = ReferenceSet.from_features(feats.subset(_others(feats.n_images, i)), config)
        new = ref.score_new(feats.subset([i]))
        torch.testing.assert_close(new.patch_scores[0], batch.patch_scores[i], rtol=1e-5, atol=1e-6)


def test_fixed_k_references_keep_k_with_the_random_share():
    from codegraph_ad.methods.reference import fixed_k_to_references

    g = torch.Generator().manual_seed(0)
    q, r = torch.randn(3, 8, generator=g), torch.randn(20, 8, generator=g)
    mask = fixed_k_to_references(q, r, 10, 0.3, seed=1)
    assert mask.sum(dim=1).tolist() == [10, 10, 10]
    nearest = torch.topk(torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(r, dim=1).T,
                         7, dim=1).indices
    assert bool(mask.gather(1, nearest).all())  # the 7 nearest, plus 3 drawn from the rest
    assert torch.equal(mask, fixed_k_to_references(q, r, 10, 0.3, seed=1))  # seeded
    assert fixed_k_to_references(q, r, 20, 0.3, seed=1) is None


@pytest.mark.parametrize("window", [None, 1])
def test_excluded_reference_patches_are_removed_as_in_codegraphs_final_pass(window):
    feats = _batch(8, seed=1)
    config = _config(0.3, window=window)
    rng = np.random.default_rng(0)
    excluded = rng.random((8, 25)) < 0.3
    excluded[2] = True  # a fully excluded image counts as in the final pass
    first = compute_first_pass(feats, config.lnamd, config.engine)
    final = first.scores(0.3, excluded=excluded)  # CoDeGraph's final scoring rule
    for i in range(8):
        others = _others(8, i)
        ref = ReferenceSet.from_features(feats.subset(others), config, excluded=excluded[others])
        torch.testing.assert_close(ref.score_new(feats.subset([i])).patch_scores[0], final[i], rtol=1e-5, atol=1e-6)


def test_a_patch_whose_only_near_neighbour_is_excluded_scores_higher():
    """Every reference holds a twin of the new image's patch 0; excluding the twins raises its score."""
    feats = _batch(6, seed=2)
    new_layers = torch.randn(1, 2, 25, 12, generator=torch.Generator().manual_seed(9))
    refs = feats.layers.clone()
    refs[:, :, 0] = new_layers[0, :, 0]  # the same token at patch 0 of every reference
    ref_feats = FeatureSet(refs, feats.cls, GRID)
    config = RunConfig(method="musc", lnamd=LNAMDConfig((1,)), msm=MSMConfig(0.5))
    new = FeatureSet(new_layers, None, GRID)
    plain = ReferenceSet.from_features(ref_feats, config).score_new(new).patch_scores[0]
    excluded = np.zeros((6, 25), dtype=bool)
    excluded[:, 0] = True
    removed = ReferenceSet.from_features(ref_feats, config, excluded=excluded).score_new(new).patch_scores[0]
    assert plain[0] < 0.2  # LNAMD normalises per image, so the twin is near, not identical
    assert removed[0] > plain[0] + 0.5
    others = torch.arange(1, 25)
    assert bool((removed[others] >= plain[others] - 1e-6).all())


def test_rscin_runs_over_references_and_new_images_together():
    feats = _batch()
    config = RunConfig(method="musc", lnamd=LNAMDConfig((1,)), rscin=RsCINConfig(enabled=True))
    raw = np.linspace(0.1, 0.9, 8)
    ref = ReferenceSet.from_features(feats.subset(range(8)), config, raw_image_scores=raw)
    out = ref.score_new(feats.subset([8]))
    assert out.image_scores.shape == (1,) and 0.0 <= out.image_scores[0] <= 1.0
    with pytest.raises(InputError, match="raw image scores"):
        ReferenceSet.from_features(feats.subset(range(8)), config).score_new(feats.subset([8]))


def test_mismatched_features_and_methods_are_refused():
    feats = _batch()
    ref = ReferenceSet.from_features(feats.subset(range(8)), _config())
    with pytest.raises(InputError, match="patch grid"):
        ref.score_new(FeatureSet(torch.randn(1, 2, 36, 12), None, (6, 6)))
    with pytest.raises(InputError, match="channels"):
        ref.score_new(FeatureSet(torch.randn(1, 2, 25, 10), None, GRID))
    with pytest.raises(ConfigError, match="musc and codegraph"):
        ReferenceSet.from_features(feats, RunConfig(method="winclip"))
