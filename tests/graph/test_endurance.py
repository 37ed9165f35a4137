import numpy as np
import pytest

from codegraph_ad.errors import BatchTooSmallError
from codegraph_ad.graph.endurance import DISTANCE_EPS, endurance_ratios, reference_rank


@pytest.mark.parametrize(
    "n, frac, k",
    [(10, 0.3, 3), (30, 0.3, 9), (3, 0.3, 2), (4, 0.3, 2), (100, 0.9, 90), (20, 1.0, 19), (7, 0.01, 2)],
)
def test_reference_rank(n, frac, k):
    assert reference_rank(n, frac) == k


def test_reference_rank_rejects():
    with pytest.raises(BatchTooSmallError):
        reference_rank(2, 0.3)
    with pytest.raises(ValueError):
        reference_rank(10, 0.0)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 2.0])
def test_matches_formula(alpha):
    rng = np.random.default_rng(0)
    dbar = np.sort(rng.uniform(0.05, 1.5, size=(4, 6, 7)), axis=-1).astype(np.float32)
    k = 5
    z = endurance_ratios(dbar, k, alpha)
    assert z.shape == (4, 6, 4) and z.dtype == np.float32
    eps = DISTANCE_EPS
    for q in range(4):
        for m in range(6):
            for i in range(1, k):
                d_i, d_k = float(dbar[q, m, i - 1]) + eps, float(dbar[q, m, k - 1]) + eps
                assert z[q, m, i - 1] == pytest.approx(d_i / d_k * d_i ** (-alpha), rel=1e-5)
    if alpha == 0.0:
        assert np.all((z > 0) & (z <= 1))


def test_zero_distances_are_finite():
    dbar = np.zeros((3, 2, 4), dtype=np.float32)
    dbar[1, :, 2:] = 0.5  # two exact copies, then a cliff
    for alpha in (0.0, 0.5):
        z = endurance_ratios(dbar, 3, alpha)
        assert np.isfinite(z).all() and np.all(z > 0)
    z = endurance_ratios(dbar, 3, 0.0)
    np.testing.assert_allclose(z[0], 1.0)  # all identical: no cliff
    assert np.all(z[1] < 1e-5)  # copies before a cliff: the most suspicious


def test_alpha_one_ties_ranks_of_a_patch():
    dbar = np.sort(np.random.default_rng(1).uniform(0.1, 1, size=(2, 3, 5)), axis=-1)
    z = endurance_ratios(dbar, 4, 1.0)
    np.testing.assert_allclose(z, z[..., :1].repeat(3, axis=-1), rtol=1e-6)
