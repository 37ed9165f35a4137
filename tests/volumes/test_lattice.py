"""The staggered lattice: shifted cubes, which tokens it keeps, half-cube maps."""

from __future__ import annotations

import numpy as np
import torch

from codegraph_ad.volumes.lattice import (
    half_grid_any,
    half_grid_map,
    inside_cubes,
    map_grid,
    shifted_cube,
)


def test_shifted_cube_moves_content_by_half_a_cube():
    vol = np.zeros((8, 8, 8), np.float32)
    vol[5, 6, 7] = 1.0
    out = shifted_cube(vol, 2)
    assert out.shape == vol.shape and out[3, 4, 5] == 1.0 and out.sum() == 1.0


def test_inside_cubes_drop_the_overhanging_layer():
    g = 3
    idx = inside_cubes(g)
    assert idx.size == (g - 1) ** 3
    xyz = np.stack(np.unravel_index(idx, (g, g, g)), 1)
    assert xyz.max() == g - 2 and len({tuple(r) for r in xyz}) == idx.size
    assert map_grid(g, True) == (6, 6, 6) and map_grid(g, False) == (3, 3, 3)


def test_half_grid_map_averages_the_two_covering_tokens():
    g = 2
    scores = torch.zeros(1, g ** 3 + (g - 1) ** 3)
    scores[0, :8] = torch.arange(8, dtype=torch.float32)  # cubic cube (x, y, z) -> 4x + 2y + z
    scores[0, 8] = 10.0  # the single shifted cube, centred on the cube grid's corner
    counted = np.ones((1, 9), bool)
    m = half_grid_map(scores, counted, g)
    assert m.shape == (1, 4, 4, 4)
    assert m[0, 0, 0, 0] == 0.0  # corner half cube: only cubic cube 0
    assert m[0, 3, 3, 3] == 7.0  # opposite corner: only cubic cube 7
    assert m[0, 1, 1, 1] == (0.0 + 10.0) / 2  # covered by cubic cube 0 and the shifted cube
    assert m[0, 2, 1, 2] == (5.0 + 10.0) / 2  # cubic cube (1, 0, 1) and the shifted cube
    counted[0, 8] = False  # a void shifted cube does not dilute its neighbours
    assert half_grid_map(scores, counted, g)[0, 1, 1, 1] == 0.0
    counted[0, 0] = False
    assert half_grid_map(scores, counted, g)[0, 0, 0, 0] == 0.0
    flags = np.zeros((1, 9), bool)
    flags[0, 8] = True
    anyf = half_grid_any(flags, g)
    assert anyf[0, 1:3, 1:3, 1:3].all() and anyf.sum() == 8
