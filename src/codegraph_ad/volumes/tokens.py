"""3D-patch tokens from a 2D ViT (thesis section 5.2; SPEC section 9).

A cube ``(D, D, D)`` is sliced along each axis; every slice goes through the 2D backbone;
the per-slice patch grids are averaged over groups of p consecutive slices (p = patch
size), so each token covers one p^3 cube; tokens are L2-normalised, projected to d' by a
fixed seeded Gaussian matrix (or kept at the backbone's C when d' = 0), and the three axes
are concatenated per cube.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from codegraph_ad.backbones.base import Backbone
from codegraph_ad.volumes.lattice import inside_cubes, shifted_cube

# How each axis is presented to the 2D model: (permutation of the cube's (x, y, z) axes
# into (depth, rows, cols), axes of the permuted array to flip). Rows run from superior
# (or anterior, for axial slices) to inferior, as radiological views show brains; the
# model was trained on upright pictures.
AXIS_VIEWS: tuple[tuple[tuple[int, int, int], tuple[int, ...]], ...] = (
    ((0, 2, 1), (1,)),  # sagittal: depth x, rows z (top = superior), cols y
    ((1, 2, 0), (1,)),  # coronal: depth y, rows z, cols x
    ((2, 1, 0), (1,)),  # axial: depth z, rows y (top = anterior), cols x
)


@dataclass
class VolumeTokens:
    """Tokens of one volume.

    layers: ``(L, M, 3 d')`` float32, M = g^3 cubes in C order of the (x, y, z) token grid,
        then, when ``staggered``, the (g - 1)^3 cubes of the half-cube-shifted grid (lattice.py).
    cls: ``(C,)`` mean [CLS] vector over every slice fed to the model (for RsCIN).
    brain_share: ``(M,)`` share of brain voxels in each cube.
    grid: ``(g, g, g)``, the cubic grid.
    """

    layers: torch.Tensor
    cls: torch.Tensor
    brain_share: np.ndarray
    grid: tuple[int, int, int]
    staggered: bool = False


def projection_matrix(in_dim: int, out_dim: int, seed: int) -> torch.Tensor:
    """``(in_dim, out_dim)`` Gaussian matrix with N(0, 1/out_dim) entries (Johnson-Lindenstrauss).

    Generated on the CPU from ``seed`` alone, so every volume of every run shares it.
    """
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(in_dim, out_dim, generator=g, dtype=torch.float32) / float(np.sqrt(out_dim))


def cube_brain_share(brain: np.ndarray, patch: int) -> np.ndarray:
    """``(g^3,)`` share of brain voxels in each p^3 cube."""
    t = torch.from_numpy(brain.astype(np.float32))[None, None]
    return F.avg_pool3d(t, kernel_size=patch, stride=patch)[0, 0].reshape(-1).numpy()


def axis_slices(cube: torch.Tensor, axis: int) -> torch.Tensor:
    """``(D, D, D)`` cube -> ``(D, D, D)`` stack of slices along ``axis`` (depth first)."""
    perm, flips = AXIS_VIEWS[axis]
    return cube.permute(*perm).flip(flips)


def grid_to_xyz(grid_tokens: torch.Tensor, axis: int) -> torch.Tensor:
    """Undo ``axis_slices`` on a token grid ``(..., g, g, g, C)`` laid out (depth, rows, cols)."""
    perm, flips = AXIS_VIEWS[axis]
    lead = grid_tokens.dim() - 4
    x = grid_tokens.flip([lead + f for f in flips])
    inverse = [perm.index(i) for i in range(3)]
    return x.permute(*range(lead), *(lead + i for i in inverse), grid_tokens.dim() - 1)


def slice_groups(depth: int, patch: int, stride: int) -> np.ndarray:
    """Indices of the slices fed to the model: every ``stride``-th slice of each group of p,
    centred in the group so that subsampling stays symmetric."""
    if stride < 1 or stride > patch:
        raise ValueError(f"slice_stride must be in [1, {patch}], got {stride}")
    offset = (patch - 1 - (patch - 1) // stride * stride) // 2
    keep = np.arange(depth) % patch
    return np.flatnonzero((keep >= offset) & ((keep - offset) % stride == 0))


class TokenBuilder:
    """Holds the backbone, the projection and the blank-slice tokens, shared by all volumes."""

    def __init__(self, backbone: Backbone, size: int, projection_dim: int, seed: int,
                 slice_stride: int = 1, slice_batch: int = 32) -> None:
        self.backbone = backbone
        self.patch = int(backbone.patch_size)
        if size % self.patch:
            raise ValueError(f"cube size {size} must be a multiple of the backbone patch size {self.patch}")
        if int(backbone.image_size) != size:
            raise ValueError(f"backbone image_size {backbone.image_size} must equal the cube size {size}")
        if projection_dim < 0:
            raise ValueError(f"projection_dim must be >= 0 (0 = no projection), got {projection_dim}")
        self.size = size
        self.g = size // self.patch
        self.slices = slice_groups(size, self.patch, slice_stride)
        self.slice_batch = max(1, int(slice_batch))
        self.projection_dim = projection_dim
        self.seed = seed
        self._proj: torch.Tensor | None = None
        self._blank: tuple[torch.Tensor, torch.Tensor] | None = None
        mean = torch.tensor(backbone.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(backbone.std, dtype=torch.float32).view(1, 3, 1, 1)
        self._mean, self._std = mean, std

    @property
    def slices_per_volume(self) -> int:
        return 3 * len(self.slices)

    def _model_input(self, slices: torch.Tensor) -> torch.Tensor:
        """``(B, D, D)`` intensities in [0, 1] -> ``(B, 3, D, D)`` normalised grey RGB."""
        return (slices[:, None].expand(-1, 3, -1, -1) - self._mean) / self._std

    def _run(self, slices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, D, D)`` -> tokens ``(B, L, g*g, C)`` and [CLS] ``(B, C)``."""
        with torch.inference_mode():
            out = self.backbone.extract(self._model_input(slices).contiguous())
        if tuple(out.grid) != (self.g, self.g):
            raise ValueError(
                f"backbone returned a {out.grid} grid for {self.size} px slices, expected {(self.g, self.g)}")
        return torch.stack([t.float() for t in out.layers], dim=1), out.cls.float()

    def _blank_tokens(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens of an all-background slice, computed once and reused for every void slice."""
        if self._blank is None:
            tok, cls = self._run(torch.zeros(1, self.size, self.size))
            self._blank = (tok[0], cls[0])
        return self._blank

    def build(self, image: np.ndarray, brain: np.ndarray, bar: tqdm | None = None) -> VolumeTokens:
        """Tokens of one normalised cube ``image: (D, D, D)`` with its ``brain`` mask."""
        cube = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        g, p = self.g, self.patch
        per_axis: list[torch.Tensor] = []
        cls_sum = None
        counts = torch.from_numpy(np.bincount(self.slices // p, minlength=g).astype(np.float32))
        for axis in range(3):
            stack = axis_slices(cube, axis)[torch.from_numpy(self.slices)]  # (S, D, D)
            groups = torch.from_numpy(self.slices // p)
            sums = None
            occupied = stack.flatten(1).abs().amax(dim=1) > 0
            blank_tok, blank_cls = self._blank_tokens()
            for start in range(0, stack.shape[0], self.slice_batch):
                sl = slice(start, min(start + self.slice_batch, stack.shape[0]))
                occ = occupied[sl]
                n = int(occ.numel())
                tok = blank_tok.expand(n, *blank_tok.shape).clone()
                cls = blank_cls.expand(n, -1).clone()
                if occ.any():
                    t, c = self._run(stack[sl][occ])
                    tok[occ], cls[occ] = t, c
                if sums is None:
                    sums = torch.zeros((g, *tok.shape[1:]), dtype=torch.float32)
                sums.index_add_(0, groups[sl], tok)
                cls_sum = cls.sum(0) if cls_sum is None else cls_sum + cls.sum(0)
                if bar is not None:
                    bar.update(n)
            assert sums is not None
            pooled = sums / counts.view(g, 1, 1, 1)  # (g_depth, L, g*g, C)
            n_layers, c = pooled.shape[1], pooled.shape[3]
            grid = pooled.permute(1, 0, 2, 3).reshape(n_layers, g, g, g, c)  # (L, depth, rows, cols, C)
            grid = grid_to_xyz(grid, axis).reshape(n_layers, g ** 3, c)
            per_axis.append(self._project(F.normalize(grid, dim=-1)))
        assert cls_sum is not None
        return VolumeTokens(
            layers=torch.cat(per_axis, dim=-1).contiguous(),
            cls=cls_sum / float(self.slices_per_volume),
            brain_share=cube_brain_share(brain, p),
            grid=(g, g, g),
        )

    def build_staggered(self, image: np.ndarray, brain: np.ndarray, bar: tqdm | None = None) -> VolumeTokens:
        """Tokens of the cubic grid followed by those of the grid shifted by half a cube."""
        return staggered_tokens(self.build(image, brain, bar), self.build_shifted(image, brain, bar))

    def build_shifted(self, image: np.ndarray, brain: np.ndarray, bar: tqdm | None = None) -> VolumeTokens:
        """Tokens of the (g - 1)^3 cubes of the grid shifted by half a cube (lattice.py)."""
        half = self.patch // 2
        full = self.build(shifted_cube(image, half), shifted_cube(brain, half), bar)
        keep = inside_cubes(self.g)
        return VolumeTokens(full.layers[:, torch.from_numpy(keep)].contiguous(), full.cls,
                            full.brain_share[keep], (self.g - 1,) * 3)

    def _project(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.projection_dim == 0:
            return tokens
        if self._proj is None:
            self._proj = projection_matrix(tokens.shape[-1], self.projection_dim, self.seed)
        if self._proj.shape[0] != tokens.shape[-1]:
            raise ValueError(f"token size changed from {self._proj.shape[0]} to {tokens.shape[-1]}")
        return tokens @ self._proj


def staggered_tokens(cubic: VolumeTokens, shifted: VolumeTokens) -> VolumeTokens:
    """One volume's lattice: its cubic-grid tokens, then its shifted-grid tokens."""
    g = cubic.grid[0]
    if cubic.staggered or shifted.grid != (g - 1,) * 3:
        raise ValueError(f"expected a cubic {cubic.grid} grid and a shifted {(g - 1,) * 3} grid, got {shifted.grid}")
    return VolumeTokens(
        layers=torch.cat([cubic.layers, shifted.layers], dim=1).contiguous(),
        cls=(cubic.cls + shifted.cls) / 2,
        brain_share=np.concatenate([cubic.brain_share, shifted.brain_share]),
        grid=cubic.grid,
        staggered=True,
    )


def stack_tokens(tokens: Sequence[VolumeTokens]) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Batch ``layers (N, L, M, C)``, ``cls (N, C)`` and ``brain_share (N, M)``."""
    if not tokens:
        raise ValueError("no volume tokens to stack")
    grids = {(t.grid, t.staggered) for t in tokens}
    if len(grids) != 1:
        raise ValueError(f"volumes have different token grids (grid, staggered): {sorted(grids)}")
    return (torch.stack([t.layers for t in tokens]), torch.stack([t.cls for t in tokens]),
            np.stack([t.brain_share for t in tokens]))
