"""Scoring invariants of MuSc on random unit features (hypothesis, small sizes)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.methods import MuSc

GRID = (3, 3)
SETTINGS = settings(max_examples=10, deadline=None)


@st.composite
def feature_sets(draw: st.DrawFn, min_n: int = 3, max_n: int = 7) -> FeatureSet:
    n = draw(st.integers(min_n, max_n))
    n_layers = draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**31 - 1))
    distinct = draw(st.integers(1, 3))  # few distinct token values: ties and exact duplicates
    degenerate = draw(st.booleans())
    g = torch.Generator().manual_seed(seed)
    m = GRID[0] * GRID[1]
    if degenerate:
        palette = torch.nn.functional.normalize(torch.randn(distinct, 8, generator=g), dim=-1)
        layers = palette[torch.randint(0, distinct, (n, n_layers, m), generator=g)]
    else:
        layers = torch.nn.functional.normalize(torch.randn(n, n_layers, m, 8, generator=g), dim=-1)
    cls = torch.nn.functional.normalize(torch.randn(n, 6, generator=g), dim=-1)
    return FeatureSet(layers.float(), cls.float(), GRID)


def _musc() -> MuSc:
    return MuSc(degrees=(1, 3), progress=False)


@SETTINGS
@given(feature_sets(), st.randoms(use_true_random=False))
def test_permuting_the_batch_permutes_the_scores(fs: FeatureSet, rnd) -> None:  # noqa: ANN001
    perm = list(range(fs.n_images))
    rnd.shuffle(perm)
    a = _musc().fit_predict(fs)
    b = _musc().fit_predict(fs.subset(perm))
    torch.testing.assert_close(b.patch_scores, a.patch_scores[perm], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.image_scores, a.image_scores[perm], rtol=1e-5, atol=1e-6)


@SETTINGS
@given(feature_sets(max_n=5))
def test_duplicating_the_batch_does_not_raise_scores(fs: FeatureSet) -> None:
    n = fs.n_images
    a = _musc().fit_predict(fs)
    b = _musc().fit_predict(fs.subset(list(range(n)) * 2))
    # Distances are sqrt(2 - 2 s) from fp32 products: near zero, a rounding error of ~1e-7
    # in s becomes up to ~5e-4 in d, and block sizes (hence rounding) differ between the
    # two batch sizes; that is the tolerance the property holds to.
    tol = 1e-3
    assert (b.patch_scores[:n] <= a.patch_scores + tol).all()
    assert (b.raw_image_scores[:n] <= a.raw_image_scores + tol).all()


@SETTINGS
@given(feature_sets())
def test_scores_are_finite(fs: FeatureSet) -> None:
    r = _musc().fit_predict(fs)
    assert torch.isfinite(r.patch_scores).all()
    assert np.isfinite(r.image_scores).all() and np.isfinite(r.raw_image_scores).all()
