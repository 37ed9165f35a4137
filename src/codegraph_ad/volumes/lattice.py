"""A staggered token lattice: the cubic grid plus a copy shifted by half a cube on every axis.

With one grid a lesion centred on a cube corner is split between 8 cubes and fills little
of each, so its tokens barely move (docs/volumes.md: a 17 mm lesion filled at most 16% of
any cube). Adding the grid shifted by p/2 along x, y and z (a body-centred lattice) puts
every point within a quarter cube of some token's centre. The shifted grid has g - 1
cubes per axis (the g-th would overhang the cube). Maps are drawn on the half-cube grid
``(2g)^3``: each half cube is covered by one cube of each grid (one only at the border)
and gets the mean score of its covering non-void tokens.
"""

from __future__ import annotations

import numpy as np
import torch


def map_grid(g: int, staggered: bool) -> tuple[int, int, int]:
    """Shape of a volume's map: the token grid, or the half-cube grid when staggered."""
    return (2 * g,) * 3 if staggered else (g, g, g)


def shifted_cube(volume: np.ndarray, half: int) -> np.ndarray:
    """The cube moved by ``-half`` voxels on every axis and zero-padded back to its size, so
    the ordinary grid of the result is the shifted grid of ``volume``."""
    moved = volume[half:, half:, half:]
    return np.pad(moved, [(0, half)] * 3)


def inside_cubes(g: int) -> np.ndarray:
    """Flat indices (C order of the (x, y, z) grid) of the shifted grid's cubes that do not
    overhang: the first g - 1 along every axis."""
    return np.arange(g ** 3).reshape(g, g, g)[: g - 1, : g - 1, : g - 1].reshape(-1)


def _doubled(grid: torch.Tensor) -> torch.Tensor:
    """``(N, a, b, c)`` -> ``(N, 2a, 2b, 2c)``, each value repeated over its 2^3 half cubes."""
    return grid.repeat_interleave(2, 1).repeat_interleave(2, 2).repeat_interleave(2, 3)


def _on_half_grid(values: torch.Tensor, g: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, M)`` lattice values -> the cubic and the shifted grid's values on ``(N, 2g, 2g, 2g)``
    (zeros where the shifted grid does not reach)."""
    n = values.shape[0]
    cubic = values[:, : g ** 3].reshape(n, g, g, g)
    shifted = values[:, g ** 3 :].reshape(n, g - 1, g - 1, g - 1)
    return _doubled(cubic), torch.nn.functional.pad(_doubled(shifted), (1, 1, 1, 1, 1, 1))


def half_grid_map(scores: torch.Tensor, counted: np.ndarray, g: int) -> np.ndarray:
    """``(N, M)`` lattice scores -> ``(N, 2g, 2g, 2g)`` float32: per half cube, the mean score of
    the covering tokens in ``counted: (N, M)`` (non-void ones), 0 where none counts."""
    s0, s1 = _on_half_grid(scores.float(), g)
    w0, w1 = _on_half_grid(torch.from_numpy(counted).float(), g)
    total, weight = s0 * w0 + s1 * w1, w0 + w1
    return torch.where(weight > 0, total / weight.clamp(min=1), torch.zeros(())).numpy()


def half_grid_any(flags: np.ndarray, g: int) -> np.ndarray:
    """``(N, M)`` bool lattice flags -> ``(N, 2g, 2g, 2g)`` bool: any covering token flagged."""
    f0, f1 = _on_half_grid(torch.from_numpy(flags.astype(np.float32)), g)
    return ((f0 + f1) > 0).numpy()
