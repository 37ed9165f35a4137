"""LNAMD against its brute-force twin (SPEC section 2) on a small non-square grid.

A 5 x 6 grid with r = 5 puts almost every position at a border, so padding, pooling order,
the (h, w) orientation and the per-image normalisation all show in the result.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codegraph_ad.features.lnamd import lnamd
from tests.brute_force import lnamd_batch_brute, lnamd_brute

GRID = (5, 6)
C = 4


def _tokens(seed: int, n: int = 3) -> np.ndarray:
    """Tokens with a different offset, scale and per-channel bias per image, so that skipping
    the per-image standardisation (or doing it per channel) changes the result."""
    rng = np.random.default_rng(seed)
    m = GRID[0] * GRID[1]
    base = rng.standard_normal((n, m, C))
    scale = rng.uniform(0.5, 4.0, (n, 1, 1))
    offset = rng.uniform(-3.0, 3.0, (n, 1, 1))
    channel = rng.uniform(-1.0, 1.0, (n, 1, C))
    return (base * scale + offset + channel).astype(np.float32)


@pytest.mark.parametrize("r", [1, 3, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_lnamd_matches_the_brute_force_twin(r: int, seed: int) -> None:
    tokens = _tokens(seed)
    got = lnamd(torch.from_numpy(tokens), GRID, r).double().numpy()
    want = lnamd_batch_brute(tokens, GRID, r)
    assert got.shape == want.shape == (3, 30, C)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_twin_discriminates_the_plausible_mistakes() -> None:
    """The comparison above can fail: each of these near-miss definitions is off by far more
    than 1e-5 on the same tokens (swapped grid axes, no standardisation, per-channel
    standardisation, edge-replicate padding)."""
    tokens = _tokens(2, n=1)[0].astype(np.float64)
    want = lnamd_brute(tokens, GRID, 3)

    swapped = lnamd_brute(tokens, (6, 5), 3)  # the row-major tokens read as a 6 x 5 grid
    assert np.abs(swapped - want).max() > 1e-2

    raw = torch.from_numpy(tokens).float()
    x = raw.T.reshape(1, C, 5, 6)
    pooled_raw = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1).reshape(C, 30).T
    no_ln = torch.nn.functional.normalize(pooled_raw, dim=-1).double().numpy()
    assert np.abs(no_ln - want).max() > 1e-2

    per_channel = (tokens - tokens.mean(0)) / tokens.std(0)
    pc = lnamd_brute(per_channel, GRID, 3)  # a second joint standardisation is a no-op on it
    assert np.abs(pc - want).max() > 1e-2

    z = ((x - x.mean()) / x.std(unbiased=False))
    rep = torch.nn.functional.pad(z, (1, 1, 1, 1), mode="replicate")
    replicate = torch.nn.functional.normalize(
        torch.nn.functional.avg_pool2d(rep, 3, stride=1).reshape(C, 30).T, dim=-1).double().numpy()
    assert np.abs(replicate - want).max() > 1e-2
    # interior positions (no padding involved) agree: the difference is the border rule alone
    interior = [y * 6 + xx for y in range(1, 4) for xx in range(1, 5)]
    np.testing.assert_allclose(replicate[interior], want[interior], atol=1e-5)


def test_r1_is_the_standardised_token_direction() -> None:
    """r = 1 is the identity pooling: each output is its own standardised token, normalised."""
    tokens = _tokens(3, n=2)
    got = lnamd(torch.from_numpy(tokens), GRID, 1).double().numpy()
    for i in range(2):
        t = tokens[i].astype(np.float64)
        z = (t - t.mean()) / t.std()
        np.testing.assert_allclose(got[i], z / np.linalg.norm(z, axis=1, keepdims=True), atol=1e-5)
