"""Where volume tokens sit: a cubic 3D grid, optionally with its half-cell-shifted twin.

Features carry it (``FeatureSet.lattice``) so that a position window (engine/window3d.py)
can measure distances in 3D; it lives here, below the engine, because features hold it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Lattice3D:
    """Positions of volume tokens, in the order the tokens are stored.

    shape: the cubic ``(d, h, w)`` grid, tokens in C order. staggered: after those, the
    ``(d-1, h-1, w-1)`` cells of the grid shifted by half a cell on every axis (C order).
    """

    shape: tuple[int, int, int]
    staggered: bool = False

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or any(int(s) != s or s < 1 for s in self.shape):
            raise ValueError(f"a 3D grid needs three positive sides (d, h, w), got {self.shape!r}")
        if self.staggered and min(self.shape) < 2:
            raise ValueError(f"a staggered lattice needs at least 2 cells per axis, got {self.shape}")
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    @property
    def n_tokens(self) -> int:
        return sum(grid_volume(shape) for shape, _, _ in self.subgrids())

    def centres(self) -> "torch.Tensor":
        """(M, 3) token centres in half cells (integers), in token order."""
        import torch

        parts = []
        for shape, origin, _ in self.subgrids():
            z, y, x = torch.meshgrid(*(torch.arange(n) for n in shape), indexing="ij")
            parts.append(torch.stack([z, y, x], dim=-1).reshape(-1, 3) * 2 + origin)
        return torch.cat(parts)

    def subgrids(self) -> list[tuple[tuple[int, int, int], int, int]]:
        """(shape, origin in half cells on every axis, index of its first token) per grid."""
        d, h, w = self.shape
        grids = [((d, h, w), 0, 0)]
        if self.staggered:
            grids.append(((d - 1, h - 1, w - 1), 1, d * h * w))
        return grids


def as_lattice(grid: tuple[int, int, int] | Lattice3D) -> Lattice3D:
    """A Lattice3D as is; a ``(d, h, w)`` tuple as the cubic grid alone."""
    return grid if isinstance(grid, Lattice3D) else Lattice3D(tuple(grid))  # type: ignore[arg-type]


def grid_volume(shape: tuple[int, int, int]) -> int:
    """Cells of a (d, h, w) grid."""
    return math.prod(shape)
