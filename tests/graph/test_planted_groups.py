"""CoDeGraph end to end (default configs) on token batches with a planted repeated defect.

A share of 25%, 30% or 40% of the images carries the same defect: near-duplicate token
vectors (small per-copy noise) on a 2 x 2 block of positions, in every layer. The other
images are normal: tokens drawn around per-position prototypes shared by the whole batch.
This is the situation CoDeGraph exists for, so with its defaults it must (1) put the
planted images into outlier communities, (2) remove their defect patches from the
references, and (3) score those patches higher than MuSc q = 0.3, which the copies fool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
import pytest
import torch

from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.methods.codegraph import CoDeGraph
from codegraph_ad.methods.musc import MuSc

N, GRID, C, LAYERS = 30, (8, 8), 32, 4


@dataclass
class PlantedBatch:
    features: FeatureSet
    planted: np.ndarray  # (P,) image indices carrying the defect
    defect: np.ndarray  # (N, M) bool, the planted defect patches


def planted_batch(share: float, seed: int) -> PlantedBatch:
    """Raw tokens (N, L, M, C): prototype + noise for normal patches, one odd vector per
    (layer, defect position) + small noise on the planted images' 2 x 2 defect block."""
    return modal_batch(share, seed, n=N, modes=1, mode_spread=0.0)


def modal_batch(share: float, seed: int, n: int = 40, modes: int = 8, mode_spread: float = 0.5,
                normal_noise: float = 0.6, copy_noise: float = 0.05) -> PlantedBatch:
    """As :func:`planted_batch`, but the normal images come in ``modes`` appearance variants
    (a per-variant shift of every prototype), as real batches do (lighting, part variants):
    look-alike normal images then link to each other and form communities of their own."""
    rng = np.random.default_rng(seed)
    h, w = GRID
    m = h * w
    planted = np.sort(rng.choice(n, int(round(share * n)), replace=False))
    y0, x0 = rng.integers(2, h - 3), rng.integers(2, w - 3)
    positions = [(y0 + dy) * w + x0 + dx for dy in (0, 1) for dx in (0, 1)]
    defect = np.zeros((n, m), dtype=bool)
    defect[np.ix_(planted, positions)] = True
    mode_of = rng.integers(modes, size=n)
    tokens = np.zeros((n, LAYERS, m, C))
    for li in range(LAYERS):
        proto = rng.standard_normal((m, C))
        shift = mode_spread * rng.standard_normal((modes, m, C))
        tokens[:, li] = proto[None] + shift[mode_of] + normal_noise * rng.standard_normal((n, m, C))
        odd = rng.standard_normal((len(positions), C))
        for q in planted:
            tokens[q, li, positions] = odd + copy_noise * rng.standard_normal(odd.shape)
    cls = rng.standard_normal((n, 16))
    fs = FeatureSet(torch.from_numpy(tokens.astype(np.float32)), torch.from_numpy(cls.astype(np.float32)), GRID)
    return PlantedBatch(fs, planted, defect)


def _explain(diag: dict[str, Any]) -> str:
    """Community sizes, densities and the fence: what a failure message needs."""
    comms = [(c["size"], round(c["density"], 1), c["outlier"]) for c in diag["communities"] if c["size"] > 1]
    q = diag["quartiles"]
    return (f"k={diag['reference_rank_k']} links={diag['links']['n_links']} communities (size, density, outlier)="
            f"{comms} Q1={q['q1']:.2f} Q3={q['q3']:.2f} fence={q['fence']}")


# Known misses of the shipped defaults on this construction (strict: a fix makes them pass
# and then these marks must go). The normal images here are i.i.d. noise around shared
# prototypes, so they barely link to each other: the graph holds the planted group's
# community and one to three small ones, and Tukey's quartiles over two to four densities
# are set by the candidate itself (fence above its density). Real batches give 11-19
# communities (benchmarks/results/codegraph_matrix.md); docs/codegraph.md, "Known limits".
# At 40% the CPM resolution scale 0.5 (session 27) keeps the weakly linked normal images in
# pairs and triples instead of singletons: five or six communities enter the quartiles and
# the group (176 per member) clears a fence of 4.5-8.0 (350.8 at scale 1).
FEW_COMMUNITIES = pytest.mark.xfail(strict=True, reason="2-4 communities: the group lifts its own Tukey fence")
CASES = [
    pytest.param(0.25, 0, marks=FEW_COMMUNITIES),
    pytest.param(0.25, 1, marks=FEW_COMMUNITIES),
    pytest.param(0.30, 0, marks=FEW_COMMUNITIES),
    pytest.param(0.30, 1, marks=FEW_COMMUNITIES),
    pytest.param(0.40, 0),
    pytest.param(0.40, 1),
]


@pytest.mark.parametrize(("share", "seed"), CASES)
def test_planted_group_is_found_excluded_and_rescored(share: float, seed: int) -> None:
    _check_planted(planted_batch(share, seed))


MODAL_CASES = [pytest.param(s, seed) for s in (0.25, 0.30, 0.40) for seed in (0, 1)]


@pytest.mark.parametrize(("share", "seed"), MODAL_CASES)
def test_planted_group_among_look_alike_normal_images(share: float, seed: int) -> None:
    """N = 40 in 8 appearance variants (4-9 communities; (0.40, 1) had 4 at scale 1, 6 at 0.5)."""
    _check_planted(modal_batch(share, seed))


def _check_planted(batch: PlantedBatch) -> None:
    codegraph = CoDeGraph(progress=False).fit_predict(batch.features)
    musc = MuSc(q=0.3, progress=False).fit_predict(batch.features)
    diag = codegraph.diagnostics["subsets"][0]
    why = _explain(diag)

    in_outliers = {i for c in diag["communities"] if c["outlier"] for i in c["images"]}
    found = np.mean([int(p) in in_outliers for p in batch.planted])
    assert found >= 0.9, f"{found:.0%} of the {batch.planted.size} planted images in outlier communities; {why}"

    excluded = codegraph.excluded.numpy()
    assert excluded[batch.defect].mean() >= 0.7, f"defect patches excluded: {excluded[batch.defect].mean():.0%}; {why}"

    s_cg = codegraph.patch_scores.numpy()[batch.defect]
    s_mu = musc.patch_scores.numpy()[batch.defect]
    assert s_cg.mean() > s_mu.mean(), f"defect score CoDeGraph {s_cg.mean():.3f} vs MuSc q=0.3 {s_mu.mean():.3f}"
    assert np.mean(s_cg > s_mu) >= 0.7, f"only {np.mean(s_cg > s_mu):.0%} of defect patches above MuSc q=0.3"


def test_defect_gate_keeps_the_planted_defects_out_and_excludes_no_more() -> None:
    """The gate (graph/filtering.py: DefectGate) only keeps dependent patches in: the planted
    defect still leaves the references, and nothing the ungated run kept is excluded."""
    batch = modal_batch(0.30, 0)
    plain = CoDeGraph(progress=False, defect_gate_percentile=None).fit_predict(batch.features)
    gated = CoDeGraph(progress=False).fit_predict(batch.features)  # the default gate, p = 90
    ex_plain, ex_gated = plain.excluded.numpy(), gated.excluded.numpy()
    assert ex_plain[batch.defect].mean() >= 0.7
    assert ex_gated[batch.defect].mean() >= 0.7, _explain(gated.diagnostics["subsets"][0])
    assert not (ex_gated & ~ex_plain).any()
    # what leaves besides the defect is its LNAMD reach (r = 5: two cells), nothing farther
    reach = ndimage.binary_dilation(batch.defect.reshape(-1, *GRID), structure=np.ones((1, 5, 5), bool))
    assert not (ex_gated & ~reach.reshape(batch.defect.shape)).any()
