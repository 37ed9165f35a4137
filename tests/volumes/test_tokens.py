"""3D-patch tokens against a brute-force loop over slices, axes and cubes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from codegraph_ad.volumes.tokens import (
    TokenBuilder,
    axis_slices,
    cube_brain_share,
    grid_to_xyz,
    projection_matrix,
    slice_groups,
)
from tests.volumes.helpers import FakeBackbone


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_grid_to_xyz_inverts_axis_slices(axis):
    x = torch.rand(28, 28, 28)
    pooled = F.avg_pool3d(axis_slices(x, axis)[None, None], 14)[0, 0]  # (depth, rows, cols)
    back = grid_to_xyz(pooled[..., None], axis)[..., 0]
    torch.testing.assert_close(back, F.avg_pool3d(x[None, None], 14)[0, 0])


def test_axis_views_put_superior_on_top():
    x = torch.zeros(4, 4, 4)
    x[:, :, -1] = 1.0  # most superior plane (z high in RAS+)
    for axis in (0, 1):
        assert axis_slices(x, axis)[0, 0].eq(1).all()  # first row of each sagittal/coronal slice


def test_slice_groups():
    assert slice_groups(28, 14, 1).tolist() == list(range(28))
    two = slice_groups(28, 14, 2)
    assert len(two) == 14 and (np.bincount(two // 14) == 7).all()
    assert slice_groups(14, 14, 14).tolist() == [6]
    with pytest.raises(ValueError, match="slice_stride"):
        slice_groups(28, 14, 0)


def test_projection_is_seeded_and_scaled():
    a, b = projection_matrix(64, 32, 3), projection_matrix(64, 32, 3)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, projection_matrix(64, 32, 4))
    assert abs(float(a.pow(2).sum(0).mean()) - 64 / 32) < 0.5


def test_builder_matches_brute_force():
    rng = np.random.default_rng(0)
    cube = rng.random((28, 28, 28)).astype(np.float32)
    cube[:, :, :5] = 0.0  # void slices exercise the blank-token shortcut
    brain = cube > 0
    bb = FakeBackbone(28)
    tokens = TokenBuilder(bb, 28, projection_dim=8, seed=1, slice_batch=5).build(cube, brain)
    g, p, d_out = 2, 14, 8
    proj = projection_matrix(16, d_out, 1)
    mean = torch.tensor(bb.mean).view(3, 1, 1)
    std = torch.tensor(bb.std).view(3, 1, 1)
    ref = torch.zeros(2, g, g, g, 3 * d_out)
    for axis in range(3):
        raw = torch.zeros(2, g, g, g, 16)
        rest = [a for a in range(3) if a != axis]
        # builder's rows axis and cols axis per view, rows reversed
        rows_ax, cols_ax = {0: (2, 1), 1: (2, 0), 2: (1, 0)}[axis]
        for i in range(28):
            sl = torch.from_numpy(np.take(cube, i, axis=axis).copy())  # dims: rest[0], rest[1]
            img = sl.permute(rest.index(rows_ax), rest.index(cols_ax)).flip(0)
            layers = bb.extract(((img[None].expand(3, -1, -1) - mean) / std)[None]).layers
            for li, tok in enumerate(layers):
                tok = tok[0].reshape(g, g, -1)
                for r in range(g):
                    for c in range(g):
                        idx = [0, 0, 0]
                        idx[axis] = i // p
                        idx[rows_ax] = g - 1 - r
                        idx[cols_ax] = c
                        raw[li, idx[0], idx[1], idx[2]] += tok[r, c] / p
        ref[..., axis * d_out:(axis + 1) * d_out] = F.normalize(raw, dim=-1) @ proj
    torch.testing.assert_close(tokens.layers, ref.reshape(2, g ** 3, 3 * d_out), atol=1e-5, rtol=1e-4)
    assert tokens.grid == (2, 2, 2)
    np.testing.assert_allclose(tokens.brain_share, cube_brain_share(brain, 14))


def test_stride_subsamples_slices_and_skips_void():
    cube = np.zeros((28, 28, 28), np.float32)
    cube[10:20, 10:20, 10:20] = 0.5
    bb = FakeBackbone(28)
    builder = TokenBuilder(bb, 28, projection_dim=4, seed=0, slice_stride=7, slice_batch=64)
    assert builder.slices_per_volume == 3 * 4
    builder.build(cube, cube > 0)
    assert bb.calls == 1 + 3  # one blank slice, then one call per axis


def test_projection_dim_zero_keeps_the_normalised_backbone_tokens():
    """d' = 0 skips the projection; projecting its per-axis tokens gives the d' > 0 tokens."""
    rng = np.random.default_rng(1)
    cube = rng.random((28, 28, 28)).astype(np.float32)
    brain = cube > 0.1
    kept = TokenBuilder(FakeBackbone(28), 28, projection_dim=0, seed=2).build(cube, brain)
    projected = TokenBuilder(FakeBackbone(28), 28, projection_dim=5, seed=2).build(cube, brain)
    c = 16  # FakeBackbone's channels
    assert kept.layers.shape == (2, 8, 3 * c)
    per_axis = kept.layers.reshape(2, 8, 3, c)
    torch.testing.assert_close(per_axis.norm(dim=-1), torch.ones(2, 8, 3))
    ref = (per_axis @ projection_matrix(c, 5, 2)).reshape(2, 8, 15)
    torch.testing.assert_close(projected.layers, ref, atol=1e-5, rtol=1e-4)


def test_builder_checks_sizes():
    with pytest.raises(ValueError, match="multiple of the backbone patch size"):
        TokenBuilder(FakeBackbone(30), 30, 8, 0)
    with pytest.raises(ValueError, match="must equal the cube size"):
        TokenBuilder(FakeBackbone(56), 28, 8, 0)
    with pytest.raises(ValueError, match="projection_dim must be >= 0"):
        TokenBuilder(FakeBackbone(28), 28, -1, 0)


def test_staggered_tokens_are_the_cubic_grid_then_the_shifted_inside_cubes():
    rng = np.random.default_rng(0)
    img = rng.random((42, 42, 42)).astype(np.float32)
    brain = np.ones_like(img, dtype=bool)
    brain[:3] = False
    builder = TokenBuilder(FakeBackbone(42), 42, projection_dim=6, seed=0)
    both = builder.build_staggered(img, brain)
    cubic = builder.build(img, brain)
    g = 3
    assert both.staggered and both.grid == (g, g, g)
    assert both.layers.shape[1] == g ** 3 + (g - 1) ** 3 and both.brain_share.shape == (g ** 3 + (g - 1) ** 3,)
    torch.testing.assert_close(both.layers[:, : g ** 3], cubic.layers)
    # the shifted cube at (0, 0, 0) covers voxels 7..20 on every axis
    sub = np.zeros_like(img)
    sub[:35, :35, :35] = img[7:, 7:, 7:]
    sub_brain = np.zeros_like(brain)
    sub_brain[:35, :35, :35] = brain[7:, 7:, 7:]
    ref = builder.build(sub, sub_brain)
    torch.testing.assert_close(both.layers[:, g ** 3], ref.layers[:, 0])
    assert both.brain_share[g ** 3] == pytest.approx(brain[7:21, 7:21, 7:21].mean())
