import math

import numpy as np
import pytest
import torch

from codegraph_ad.engine.msm import msm_k, msm_scores
from codegraph_ad.engine.mutual import pair_minima, plan_minima, refine_minima
from codegraph_ad.engine.rscin import rscin
from tests.conftest import unit_features


def brute_minima(x: torch.Tensor) -> torch.Tensor:
    """Straightforward loop: per query image, distances to every patch of every other image."""
    n, m, _ = x.shape
    out = torch.full((n, n, m), float("inf"), dtype=torch.float64)
    xd = x.double()
    for q in range(n):
        for j in range(n):
            if j == q:
                continue
            d = torch.cdist(xd[q], xd[j])  # (m, m) differences, independent of the engine
            out[q, j] = d.min(dim=1).values
    return out


def near_duplicates() -> torch.Tensor:
    """Four images of 64 patches, each a small perturbation of one base: distances about 0.08,
    similarities near 1 (where the reduced precisions' rounding shows)."""
    g = torch.Generator().manual_seed(7)
    base = torch.nn.functional.normalize(torch.randn(64, 384, generator=g), dim=-1)
    return torch.stack([torch.nn.functional.normalize(base + 0.003 * torch.randn(64, 384, generator=g), dim=-1)
                        for _ in range(4)])


@pytest.mark.parametrize("budget", [0.05, 1.0, 4096])
def test_pair_minima_matches_brute_force(budget):
    x = unit_features(7, 20, 16, seed=1)
    got = pair_minima(x, budget_mb=budget, with_argmin=True)
    ref = brute_minima(x)
    finite = torch.isfinite(ref)
    assert torch.equal(torch.isfinite(got.dist), finite)
    assert torch.allclose(got.dist[finite].double(), ref[finite], atol=1e-5)
    # argmin points at a patch that attains the minimum
    n, m, _ = x.shape
    for q in range(n):
        for j in range(n):
            if q == j:
                continue
            nn = x[j][got.argmin[q, j].long()]
            d = (x[q] - nn).norm(dim=1)
            assert torch.allclose(d.double(), ref[q, j], atol=1e-5)


@pytest.mark.parametrize("with_argmin", [False, True])
def test_bf16_minima_close_to_fp32(with_argmin):
    x = unit_features(6, 64, 384, seed=2)
    a = pair_minima(x, precision="bf16", with_argmin=with_argmin)
    b = pair_minima(x, precision="fp32", with_argmin=True)
    f = torch.isfinite(b.dist)
    assert torch.equal(torch.isfinite(a.dist), f)
    err = (a.dist[f] - b.dist[f]).abs()
    assert float(err.max()) < 5e-3 and float(err.mean()) < 1e-3
    assert (a.argmin is not None) == with_argmin
    if with_argmin:  # the chosen patch is (nearly) as near as the fp32 one
        n, m, _ = x.shape
        q, j = torch.nonzero(~torch.eye(n, dtype=torch.bool), as_tuple=True)
        chosen = x[j.view(-1, 1), a.argmin[q, j].long()]  # (pairs, M, C)
        d = (x[q] - chosen).norm(dim=-1)
        assert float((d - b.dist[q, j]).abs().max()) < 5e-3


def test_bf16_keeps_near_neighbours_finer_than_a_plain_bf16_product():
    # near-duplicate patches (distances about 0.08, similarity near 1): a bf16 similarity
    # near 1 is rounded in steps of 2^-8; the offset product rounds o - s, which is small
    # there, and what is left is the operands' own rounding (measured: mean distance error
    # 2.1e-3 against 5.7e-3 for the plain product and 7.6e-3 for int8)
    x = near_duplicates()
    exact = pair_minima(x, precision="fp32").dist
    f = torch.isfinite(exact)
    got = pair_minima(x, precision="bf16").dist
    xb = x.reshape(-1, 384).bfloat16()
    plain_sim = (xb @ xb.T).float().view(4, 64, 4, 64).amax(dim=3).permute(0, 2, 1)  # (N, N, M)
    plain = torch.sqrt(torch.clamp(2 - 2 * plain_sim, min=0))
    int8 = pair_minima(x, precision="int8").dist
    ours, theirs, int8_err = ((d[f] - exact[f]).abs().mean() for d in (got, plain, int8))
    assert ours < theirs / 2 and ours < int8_err / 2


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_small_distances_with_argmins_are_recomputed_in_fp32(precision):
    """CoDeGraph's endurance ratios divide small distances: with argmins, a reduced precision
    only chooses the neighbour of a near-duplicate and its distance is fp32's."""
    x = near_duplicates()
    exact = pair_minima(x, precision="fp32", with_argmin=True)
    f = torch.isfinite(exact.dist)
    with_arg = pair_minima(x, precision=precision, with_argmin=True)
    without = pair_minima(x, precision=precision)
    assert torch.equal(with_arg.argmin, exact.argmin)
    assert float((with_arg.dist[f] - exact.dist[f]).abs().max()) < 1e-4
    assert float((without.dist[f] - exact.dist[f]).abs().max()) > 1e-3  # the product's own error
    # a map whose small distances nothing divides keeps the product's own (exact_small=False)
    kept = plan_minima(x, precision=precision, with_argmin=True, exact_small=False)
    assert torch.equal(kept.dist, without.dist) and torch.equal(kept.argmin, exact.argmin)
    # a listed plan's slots are recomputed against the listed images
    from codegraph_ad.engine.plan import ReferencePlan
    refs = torch.tensor([[1, 2], [2, 3], [3, 0], [0, 1]])
    listed = plan_minima(x, ReferencePlan(4, refs), precision=precision, with_argmin=True)
    want = exact.dist[torch.arange(4).unsqueeze(1), refs]
    assert float((listed.dist - want).abs().max()) < 1e-4


def test_bf16x3_keeps_small_distances_without_a_recompute(monkeypatch):
    """bf16 in two parts per operand: near-duplicate distances within about 1e-4 of fp32's,
    an order of magnitude finer than bf16's, with no fp32 recompute at the argmins."""
    from codegraph_ad.engine import mutual

    x = near_duplicates()
    exact = pair_minima(x, precision="fp32", with_argmin=True)
    f = torch.isfinite(exact.dist)
    bf16 = pair_minima(x, precision="bf16")

    def no_recompute(*a, **k):
        raise AssertionError("bf16x3 must not recompute its small distances")

    monkeypatch.setattr(mutual, "_exact_small_distances", no_recompute)
    x3 = pair_minima(x, precision="bf16x3", with_argmin=True)
    assert torch.equal(x3.argmin, exact.argmin)
    err, bf16_err = ((d.dist[f] - exact.dist[f]).abs().max() for d in (x3, bf16))
    assert float(err) < 2e-4 and float(err) < float(bf16_err) / 10


def test_bf16x3_block_values_are_positive_with_a_small_offset():
    """Exact duplicates (a row against itself) stay positive, so the int16 minimum is still
    the nearest patch, and the offset sits within 2^-11 of the largest squared norm (bf16's
    own rounds 1 up to 1.0078, a floor under every near neighbour's distance)."""
    from codegraph_ad.engine.products import Bf16x3Product

    g = torch.Generator().manual_seed(3)
    for scale in (1.0, 2.0):
        x = torch.nn.functional.normalize(torch.randn(96, 40, generator=g), dim=-1) * scale
        p = Bf16x3Product()
        low = p.prepare(x)
        raw = p.block(low, p.right(low))
        assert raw.dtype == torch.int16 and bool((raw > 0).all())
        largest = float((x.double() ** 2).sum(dim=1).max())
        assert largest <= float(p.offset) <= largest * (1 + 2**-11)
        sim = p.to_similarity(raw.clone())
        exact = x.double() @ x.double().T
        # what is left is the result's rounding, one bf16 step (2^-8) of o - s at most, and the
        # dropped x_lo.y_lo (2^-18 of the squared norms)
        assert bool(((sim.double() - exact).abs() <= 2**-8 * (float(p.offset) - exact) + 1e-5 * scale**2).all())
        v, i = p.nearest(raw, 1, with_arg=True)
        assert torch.equal(i.long(), torch.arange(96))  # each row's nearest is itself


def test_bf16_block_values_are_positive_and_order_like_the_similarities():
    from codegraph_ad.engine.products import Bf16Product

    g = torch.Generator().manual_seed(3)
    x = torch.randn(96, 40, generator=g) * 2.0  # not unit rows: the offset follows the norms
    p = Bf16Product()
    low = p.prepare(x)
    raw = p.block(low, p.right(low))
    assert raw.dtype == torch.int16 and bool((raw > 0).all())
    assert p.offset >= float((x.bfloat16().float() ** 2).sum(dim=1).max())
    sim = p.to_similarity(raw.clone())
    exact = x @ x.T
    assert float((sim - exact).abs().max() / exact.abs().max()) < 1e-2
    # the int16 minimum of a row is the row's largest similarity
    v, i = p.nearest(raw, 1, with_arg=True)
    assert torch.equal(v, raw.gather(1, i.long().unsqueeze(1)).squeeze(1))
    picked = exact.gather(1, i.long().unsqueeze(1)).squeeze(1)
    assert float((exact.amax(dim=1) - picked).max() / exact.abs().max()) < 1e-2


@pytest.mark.parametrize("with_argmin", [False, True])
def test_int8_minima_close_to_fp32(with_argmin):
    x = unit_features(6, 64, 384, seed=2)
    a = pair_minima(x, precision="int8", with_argmin=with_argmin)
    b = pair_minima(x, precision="fp32")
    f = torch.isfinite(b.dist)
    assert torch.equal(torch.isfinite(a.dist), f)
    err = (a.dist[f] - b.dist[f]).abs()
    assert float(err.max()) < 1e-2 and float(err.mean()) < 2e-3
    assert (a.argmin is not None) == with_argmin


def test_int8_rotation_keeps_outlier_channels_from_coarsening_the_grid():
    # ViT tokens carry a few very large channels; without the rotation the batch-wide
    # scale would be set by them and the other channels would round to a few levels
    x = unit_features(4, 64, 384, seed=5)
    x[..., 7] += 3.0
    x = torch.nn.functional.normalize(x, dim=-1)
    a = pair_minima(x, precision="int8").dist
    b = pair_minima(x, precision="fp32").dist
    f = torch.isfinite(b)
    assert float((a[f] - b[f]).abs().max()) < 1e-2


def test_fast_mode_is_one_of_the_measured_modes_and_close_to_fp32():
    from codegraph_ad.engine.autotune import fastest_reduced_precision

    assert fastest_reduced_precision(64, pair_minima) in ("fp32", "bf16", "int8")
    x = unit_features(6, 64, 384, seed=3)
    a = pair_minima(x, precision="fast").dist
    b = pair_minima(x, precision="fp32").dist
    f = torch.isfinite(b)
    assert float((a[f] - b[f]).abs().max()) < 1e-2


def test_int8_falls_back_when_sizes_do_not_fit():
    x = unit_features(5, 10, 12, seed=6)  # 10 patches: not a multiple of 8
    a = pair_minima(x, precision="int8").dist
    b = pair_minima(x, precision="fp32").dist
    assert torch.equal(a, b)


def test_msm_scores_definition():
    x = unit_features(9, 12, 8, seed=3)
    dist = brute_minima(x).float()
    for q in (0.1, 0.3, 1.0):
        got = msm_scores(dist, q)
        k = max(1, math.ceil(q * 8))
        for i in range(9):
            others = torch.cat([dist[i, :i], dist[i, i + 1 :]])  # (8, M)
            ref = others.sort(dim=0).values[:k].mean(dim=0)
            assert torch.allclose(got[i], ref, atol=1e-6)


def test_msm_reference_subset_and_k():
    x = unit_features(8, 5, 8, seed=4)
    dist = brute_minima(x).float()
    refs = torch.tensor([True, True, False, False, True, True, True, True])
    got = msm_scores(dist, 0.5, refs)
    for i in range(8):
        allowed = [j for j in range(8) if refs[j] and j != i]
        k = msm_k(len(allowed), 0.5)
        ref = dist[i, allowed].sort(dim=0).values[:k].mean(dim=0)
        assert torch.allclose(got[i], ref, atol=1e-6)
    assert msm_k(82, 0.3) == 25 and msm_k(1, 0.3) == 1


def test_refine_minima_equals_recomputation():
    x = unit_features(6, 10, 8, seed=5)
    first = pair_minima(x, with_argmin=True)
    excluded = torch.zeros(6, 10, dtype=torch.bool)
    excluded[2, :4] = True
    excluded[4, :] = True  # a whole image removed
    got = refine_minima(x, first, excluded)
    for q in range(6):
        for j in range(6):
            if q == j:
                continue
            keep = ~excluded[j]
            if not keep.any():
                assert torch.isinf(got[q, j]).all()
                continue
            ref = torch.cdist(x[q].double(), x[j][keep].double()).min(dim=1).values
            assert torch.allclose(got[q, j].double(), ref, atol=1e-5)
    # also without argmins
    got2 = refine_minima(x, type(first)(first.dist, None), excluded)
    assert torch.allclose(got, got2, atol=1e-6)


def test_identical_images_give_zero_not_nan():
    x = unit_features(1, 10, 8).repeat(4, 1, 1)
    d = pair_minima(x).dist
    s = msm_scores(d, 0.3)
    assert torch.isfinite(s).all() and float(s.abs().max()) < 1e-3


def test_rscin_matches_definition():
    rng = np.random.default_rng(0)
    scores = rng.random(7)
    cls = rng.normal(size=(7, 5)) + 3
    out = rscin(scores, cls, (1, 2, 3))
    norm = (scores - scores.min()) / (scores.max() - scores.min())
    unit = cls / np.linalg.norm(cls, axis=1, keepdims=True)
    sim = unit @ unit.T
    ref = np.zeros(7)
    for k in (1, 2, 3):
        for i in range(7):
            idx = np.argsort(-sim[i])[:k]
            w = sim[i, idx] / sim[i, idx].sum()
            ref[i] += (w * norm[idx]).sum() / 3
    assert np.allclose(out, ref)


def test_screen_drops_modes_whose_product_is_far_slower_or_missing(monkeypatch):
    """A fake clock makes bf16's product 100x fp32's and int8 unavailable: only fp32 is left."""
    from codegraph_ad.engine import autotune, products

    clock = [0.0]
    cost = {products.Fp32Product: 0.01, products.Bf16Product: 1.0}

    def fake_block(self, left, right):
        if type(self) is products.Int8Product:
            raise RuntimeError("no int8 kernel in this build")
        clock[0] += cost[type(self)]
        return left[:, : right.shape[0]].float() @ right.float()  # bf16's rows hold both operand forms

    for cls in (products.Fp32Product, products.Bf16Product, products.Int8Product):
        monkeypatch.setattr(cls, "block", fake_block)
    monkeypatch.setattr(autotune.time, "perf_counter", lambda: clock[0])
    assert autotune._plausible_modes(rows=32, channels=16) == ["fp32"]
    cost[products.Bf16Product] = 0.02  # 2x: close enough to be timed for real
    assert autotune._plausible_modes(rows=32, channels=16) == ["fp32", "bf16"]


def test_rscin_top_k_in_row_chunks_equals_the_full_sort(monkeypatch) -> None:
    """Memory linear in N: rows in chunks, only the k largest kept, ties by lower index."""
    import importlib

    rscin_module = importlib.import_module("codegraph_ad.engine.rscin")

    rng = np.random.default_rng(0)
    n = 40
    scores, cls = rng.random(n), np.round(rng.standard_normal((n, 6)))  # rounded: many ties
    cls[5] = cls[0]
    feats = cls / np.linalg.norm(cls, axis=1, keepdims=True)
    sim = feats @ feats.T
    norm = (scores - scores.min()) / (scores.max() - scores.min())
    want = np.zeros(n)
    for k in (1, 2, 3):
        idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
        w = np.clip(np.take_along_axis(sim, idx, axis=1), 0.0, None)
        w = w / w.sum(axis=1, keepdims=True)
        want += (w * norm[idx]).sum(axis=1)
    monkeypatch.setattr(rscin_module, "_ROW_BYTES", 8 * n * 3)  # three rows at a time
    assert np.allclose(rscin_module.rscin(scores, cls, (1, 2, 3)), want / 3, atol=1e-12)


@pytest.mark.parametrize("m,dtype", [(256, torch.uint8), (257, torch.int16)])
def test_argmins_use_the_narrowest_type_and_reach_every_patch(m, dtype):
    # M = 256 stores uint8: indices 128..255 must come back unsigned (an int8 would wrap)
    x = unit_features(3, m, 8, seed=7)
    got = pair_minima(x, with_argmin=True)
    assert got.argmin.dtype == dtype
    sim = torch.einsum("qmc,jpc->qjmp", x, x)
    want = sim.argmax(dim=3)
    off = ~torch.eye(3, dtype=torch.bool)
    assert torch.equal(got.argmin.long()[off], want[off])
    assert int(got.argmin.long()[off].max()) > 127
    # the refinement reads them as indices, not as a mask
    excluded = torch.zeros(3, m, dtype=torch.bool)
    excluded[1, 200:] = True
    refined = refine_minima(x, got, excluded)
    ref = torch.cdist(x[0].double(), x[1][:200].double()).min(dim=1).values
    assert torch.allclose(refined[0, 1].double(), ref, atol=1e-5)


@pytest.mark.parametrize("shape, dim", [((1, 1024, 1, 1024), 1), ((2, 512, 2, 512), 1), ((1024, 3, 1024), 0),
                                        ((4, 256, 4, 256), 1)])
def test_nearest_with_indices_on_aliased_strides_equals_torch_max(shape, dim):
    """The transposed-row path (4 KB-aliased strides) returns torch's values and first-tie indices."""
    from codegraph_ad.engine import products

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 50, shape, generator=g).float()  # many ties
    if shape[dim] >= 512:
        assert products._aliased_reduction(x, dim)
    v, i = products.Fp32Product().nearest(x, dim, with_arg=True)
    want_v, want_i = x.max(dim=dim)
    assert torch.equal(v, want_v) and torch.equal(i.long(), want_i)
    bits = x.to(torch.bfloat16).view(torch.int16)
    v, i = products.Bf16Product().nearest(bits, dim, with_arg=True)
    want_v, want_i = bits.min(dim=dim)
    assert torch.equal(v, want_v) and torch.equal(i.long(), want_i)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "bf16x3"])
@pytest.mark.parametrize("plan", ["dense", "listed"])
def test_padded_cpu_blocks_give_the_unpadded_minima_and_argmins(precision, plan, monkeypatch):
    """CPU blocks whose rows are a multiple of 1 KB are written with a cache line of padding
    per row (products._padded_product), so that column reductions run in place; minima and
    argmins are those of unpadded blocks, bit for bit, on the dense and the listed paths."""
    from codegraph_ad.engine import mutual, products
    from codegraph_ad.engine.plan import ReferencePlan

    monkeypatch.setattr(mutual, "dense_is_cheaper", lambda *a, **k: False)  # keep the listed path listed
    a, b = torch.randn(512, 8), torch.randn(8, 1024)
    out = products._padded_product(a, b)
    assert out.shape == (512, 1024) and out.stride() == (1024 + 16, 1) and torch.equal(out, a @ b)
    assert products._padded_product(a, b[:, :1000]).stride() == (1000, 1)
    assert products._padded_product(a.bfloat16(), b[:, :512].bfloat16()).stride() == (512 + 32, 1)

    x = unit_features(6, 256, 16, seed=3)  # 256 patches: 1 KB rows in fp32, padded
    x[2, :40] = x[4, 100:140] + 1e-3 * torch.randn(40, 16)  # near-duplicates, where precision shows
    x = torch.nn.functional.normalize(x, dim=-1)
    refs = torch.tensor([[1, 2, 5], [0, 2, 3], [0, 4, 5], [1, 4, 5], [0, 2, 3], [1, 2, 3]])

    def minima():
        if plan == "dense":
            return pair_minima(x, precision=precision, with_argmin=True)
        return plan_minima(x, ReferencePlan(6, refs, "fixed-k"), precision=precision, with_argmin=True)

    padded = minima()
    monkeypatch.setattr(products, "_ROW_PAD_BYTES", 0)
    unpadded = minima()
    assert torch.equal(padded.dist, unpadded.dist)
    assert torch.equal(padded.argmin, unpadded.argmin)
