"""Batched feature extraction: images -> multi-layer patch tokens + [CLS]."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from codegraph_ad.backbones.base import Backbone
from codegraph_ad.errors import InputError
from codegraph_ad.features.preprocess import to_model_input
from codegraph_ad.progress import Progress

if TYPE_CHECKING:  # the lattice is only carried here
    from codegraph_ad.features.lattice import Lattice3D


@dataclass
class FeatureSet:
    """Backbone tokens of a batch.

    layers: ``(N, L, M, C)`` raw tokens of the chosen blocks, float32, or float16 when held
        so (``FeatureConfig.token_dtype``, or half-precision arrays given to
        ``from_arrays``): half the memory, and every reader casts chunks to float32 first
        (LNAMD), so the scores are those of the same values held in float32, bit for bit.
    cls: ``(N, C_cls)`` float32 [CLS] vectors, or None for tokens without one (only RsCIN,
        [CLS] screening and the content-keyed subset division read it, and they say so).
    grid: ``(h, w)`` patch grid, h * w = M.
    lattice: for volume tokens, their 3D positions (``grid`` is then the flattened layout the
        2D code reads); ``--window`` measures distances on it. None for images.
    """

    layers: torch.Tensor
    cls: torch.Tensor | None
    grid: tuple[int, int]
    lattice: Lattice3D | None = None

    @classmethod
    def from_arrays(cls, layers: Any, grid: tuple[int, int] | None = None, cls_tokens: Any = None) -> "FeatureSet":
        """Tokens held as arrays: ``(N, L, H, W, C)`` (the grid is read from the shape) or
        ``(N, L, M, C)`` with ``grid=(h, w)``; ``cls_tokens`` ``(N, C)`` is optional.

        numpy arrays and torch tensors are both taken; float16 tokens are held as
        given (half the memory of float32; the methods compute in float32 from them), any other
        dtype (bfloat16 included) becomes float32, so a float32 input is used as is, bit for bit.
        """
        x = _checked_tensor(layers, "features", keep_half=True)
        if x.dim() == 5:
            n, n_layers, h, w, c = x.shape
            if grid is not None and tuple(grid) != (h, w):
                raise InputError(f"grid={tuple(grid)} disagrees with the (N, L, H, W, C) features of shape "
                                 f"{tuple(x.shape)}")
            x, grid = x.reshape(n, n_layers, h * w, c), (int(h), int(w))
        elif x.dim() == 4:
            if grid is None:
                raise InputError(f"features of shape {tuple(x.shape)} are (N, L, M, C): pass grid=(h, w) with "
                                 "h * w = M, or give them as (N, L, H, W, C)")
            grid = (int(grid[0]), int(grid[1]))
            if grid[0] * grid[1] != x.shape[2]:
                raise InputError(f"grid={grid} has {grid[0] * grid[1]} patches, the features have M = {x.shape[2]}")
        else:
            raise InputError(f"features must be (N, L, H, W, C) or (N, L, M, C), got shape {tuple(x.shape)}")
        cls_t = None
        if cls_tokens is not None:
            cls_t = _checked_tensor(cls_tokens, "cls")
            if cls_t.dim() != 2 or cls_t.shape[0] != x.shape[0]:
                raise InputError(f"cls must be (N, C) with N = {x.shape[0]}, got shape {tuple(cls_t.shape)}")
        return FeatureSet(x.contiguous(), cls_t, grid)

    @property
    def n_images(self) -> int:
        return int(self.layers.shape[0])

    @property
    def window_grid(self) -> tuple[int, int] | Lattice3D:
        """The positions ``--window`` measures: the 3D lattice of volume tokens, else the patch grid."""
        return self.lattice if self.lattice is not None else self.grid

    def subset(self, index: Sequence[int] | torch.Tensor) -> "FeatureSet":
        """The images ``index``; the whole set in order is returned as is, not copied (at
        N = 500, M = 1024 the copy alone was 3 GB of a run's peak)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        if idx.numel() == self.n_images and bool((idx == torch.arange(self.n_images)).all()):
            return self
        return FeatureSet(self.layers[idx], None if self.cls is None else self.cls[idx], self.grid, self.lattice)


TOKEN_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def resolve_token_dtype(token_dtype: str, n_images: int, references: int | None = None) -> str:
    """The dtype ``token_dtype`` (FeatureConfig.token_dtype) holds a batch of ``n_images`` in.

    "auto" is float16 where the engine's plan is fixed-K (``references`` K < N - 1): that
    plan is an approximation by design, so the rounding of the tokens (scores within about
    1e-5) is nothing next to it, and it is the plan of the large batches, where the float32
    tokens alone decide whether N = 1,000 fits in 4 GB (docs/scale.md). Everywhere else
    "auto" is float32, so exact runs keep their scores to the last digit."""
    if token_dtype != "auto":
        return token_dtype
    return "float16" if references is not None and references < n_images - 1 else "float32"


def held_as(features: FeatureSet, token_dtype: str, references: int | None = None) -> FeatureSet:
    """``features`` with its tokens held in ``token_dtype`` (FeatureConfig.token_dtype;
    "auto" resolved for this batch and ``references``, see ``resolve_token_dtype``).

    float16 halves the largest array a run holds (N = 1,000 images at 224 px: 1.5 GB of
    float32 tokens); the tokens lose the digits below float16's (relative 5e-4) and the
    scores move by at most about 1e-5 (benchmarks/results/token_dtype.md). The [CLS]
    vectors stay float32 (small)."""
    dtype = TOKEN_DTYPES[resolve_token_dtype(token_dtype, features.n_images, references)]
    if features.layers.dtype == dtype:
        return features
    return FeatureSet(features.layers.to(dtype), features.cls, features.grid, features.lattice)


def _checked_tensor(value: Any, what: str, keep_half: bool = False) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
    elif isinstance(value, np.ndarray):
        t = torch.from_numpy(value)
    else:
        raise InputError(f"{what} must be a numpy array or a torch tensor, got {type(value).__name__}")
    if not (t.is_floating_point() or t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise InputError(f"{what} must hold numbers, got dtype {t.dtype}")
    if not (keep_half and t.dtype == torch.float16):
        t = t.float()
    if not bool(torch.isfinite(t).all()):
        raise InputError(f"{what} holds NaN or infinite values")
    return t


def extract_features(
    backbone: Backbone,
    load: Callable[[int], np.ndarray],
    n_images: int,
    batch_size: int = 8,
    progress: bool | Progress = True,
) -> FeatureSet:
    """Run ``backbone`` over images ``load(0..n_images-1)`` (uint8 RGB) in batches.

    The backbone runs where it was placed (``backbones.from_config.backbone_from_config``'s
    ``device``); the batches go in as CPU tensors and the features come back on the CPU.

    progress: the run's Progress (its "features" stage) or a bool."""
    layers: list[torch.Tensor] = []
    cls: list[torch.Tensor] = []
    grid: tuple[int, int] | None = None
    with Progress.of(progress).stage("features", n_images, "img") as bar:
        for start in range(0, n_images, batch_size):
            idx = range(start, min(start + batch_size, n_images))
            batch = torch.stack(
                [to_model_input(load(i), backbone.image_size, backbone.mean, backbone.std) for i in idx]
            )
            with torch.inference_mode():
                out = backbone.extract(batch)
            # a backbone on a GPU hands back CPU tensors; .cpu() also brings home those of a
            # user's backbone that does not (a no-op on CPU tensors: the same tensor)
            layers.append(torch.stack([t.float().cpu() for t in out.layers], dim=1))
            cls.append(out.cls.float().cpu())
            grid = out.grid
            bar.advance(len(idx))
    if grid is None:
        raise ValueError("no images to extract features from")
    return FeatureSet(torch.cat(layers), torch.cat(cls), grid)
