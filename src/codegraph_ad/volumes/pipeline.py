"""Volumes in, 3D-patch token batch out: read, prepare cubes, standardise, build tokens."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from codegraph_ad.engine.threads import thread_budget
from codegraph_ad.errors import InputError
from codegraph_ad.features.extract import FeatureSet, held_as
from codegraph_ad.features.lattice import Lattice3D
from codegraph_ad.methods.base import check_batch_size
from codegraph_ad.volumes.config import VolumeConfig
from codegraph_ad.volumes.lattice import half_grid_any, half_grid_map, map_grid
from codegraph_ad.volumes.nifti import VolumeGeometry, load_mask_like, load_nifti, nifti_stem
from codegraph_ad.volumes.preprocess import Cube, histogram_standardise, prepare_cube
from codegraph_ad.volumes.tokens import TokenBuilder, VolumeTokens, stack_tokens


@dataclass
class PreparedVolume:
    """One input after preprocessing: its file geometry and its model cube."""

    name: str
    geometry: VolumeGeometry
    cube: Cube


@dataclass
class TokenBatch:
    """Everything scoring and writing need.

    features: a ``FeatureSet`` whose ``grid`` is ``(g, g * g)`` (the flattened 3D grid;
    only LNAMD r = 1 is valid on it), ``(1, M)`` for a staggered lattice, and whose
    ``lattice`` holds the 3D positions (for ``--window``). solid: ``(N, M)``
    bool, cubes with enough brain. grid3d: the cubic grid ``(g, g, g)``.
    """

    volumes: list[PreparedVolume]
    features: FeatureSet
    grid3d: tuple[int, int, int]
    brain_share: np.ndarray
    solid: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    staggered: bool = False

    @property
    def map_grid(self) -> tuple[int, int, int]:
        """Shape of each volume's map (lattice.map_grid)."""
        return map_grid(self.grid3d[0], self.staggered)

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.volumes]

    def subset(self, index: Sequence[int]) -> "TokenBatch":
        """A sub-batch sharing these tokens (e.g. several cohorts drawn from one extraction)."""
        idx = [int(i) for i in index]
        return TokenBatch([self.volumes[i] for i in idx], self.features.subset(idx), self.grid3d,
                          self.brain_share[idx], self.solid[idx], dict(self.timings), self.staggered)


def unique_names(paths: Sequence[Path]) -> list[str]:
    """File stems, made unique with the parent folder's name where two collide."""
    stems = [nifti_stem(p) for p in paths]
    out = []
    for p, s in zip(paths, stems):
        out.append(s if stems.count(s) == 1 else f"{p.parent.name}__{s}")
    if len(set(out)) != len(out):
        raise InputError(f"input volumes have colliding names: {sorted(out)}")
    return out


def prepare_volumes(
    paths: Sequence[Path],
    config: VolumeConfig,
    brain_masks: Sequence[Path | None] | None = None,
    progress: bool = True,
) -> list[PreparedVolume]:
    """Read each file, build its cube, then (optionally) standardise histograms across the batch."""
    if brain_masks is not None and len(brain_masks) != len(paths):
        raise ValueError(f"{len(brain_masks)} brain masks for {len(paths)} volumes")
    names = unique_names(paths)
    out = []
    for i in tqdm(range(len(paths)), desc="reading volumes", unit="vol", disable=not progress, leave=False):
        vol = load_nifti(paths[i])
        mask_path = None if brain_masks is None else brain_masks[i]
        brain = None if mask_path is None else load_mask_like(mask_path, vol.geometry)
        cube = prepare_cube(vol, config.size, config.crop, config.crop_margin, config.percentiles, brain,
                            config.white_level)
        out.append(PreparedVolume(names[i], vol.geometry, cube))
        del vol
    if config.histogram_standardisation:
        histogram_standardise([v.cube for v in out])
    return out


def build_tokens(
    volumes: Sequence[PreparedVolume],
    config: VolumeConfig,
    backbone=None,
    progress: bool = True,
) -> list[VolumeTokens]:
    """3D-patch tokens of each prepared volume (one shared backbone and projection)."""
    if backbone is None:
        backbone = load_volume_backbone(config)
    builder = TokenBuilder(backbone, config.size, config.projection_dim, config.projection_seed,
                           config.slice_stride, config.run.features.batch_size)
    passes = 2 if config.staggered else 1
    bar = tqdm(total=len(volumes) * builder.slices_per_volume * passes, desc="slices", unit="slice",
               disable=not progress, leave=False)
    build = builder.build_staggered if config.staggered else builder.build
    try:
        return [build(v.cube.image, v.cube.brain, bar) for v in volumes]
    finally:
        bar.close()


def load_volume_backbone(config: VolumeConfig):
    """The configured 2D backbone at the cube side (slices are fed at their own size)."""
    from codegraph_ad.backbones.from_config import backbone_from_config

    return backbone_from_config(replace(config.run.features, image_size=config.size), config.run.engine.threads,
                                device=config.run.engine.device)


def token_batch(volumes: list[PreparedVolume], tokens: Sequence[VolumeTokens], config: VolumeConfig) -> TokenBatch:
    """Stack per-volume tokens into a ``FeatureSet`` the 2D methods accept unchanged."""
    layers, cls, share = stack_tokens(tokens)
    g, staggered = tokens[0].grid, tokens[0].staggered
    features = held_as(FeatureSet(layers, cls, (1, layers.shape[2]) if staggered else (g[0], g[1] * g[2]),
                                  Lattice3D(g, staggered)), config.run.features.token_dtype,
                       config.run.engine.references)
    return TokenBatch(volumes, features, g, share, share >= config.void_fraction, staggered=staggered)


def tokens_from_paths(
    paths: Sequence[Path],
    config: VolumeConfig,
    brain_masks: Sequence[Path | None] | None = None,
    backbone=None,
    progress: bool = True,
) -> TokenBatch:
    """Read, prepare and tokenise a batch of volumes, timing each phase."""
    check_batch_size(len(paths))
    with thread_budget(config.run.engine.threads):
        t0 = time.perf_counter()
        volumes = prepare_volumes(paths, config, brain_masks, progress)
        t1 = time.perf_counter()
        tokens = build_tokens(volumes, config, backbone, progress)
        t2 = time.perf_counter()
    batch = token_batch(volumes, tokens, config)
    batch.timings.update({"read_s": t1 - t0, "tokens_s": t2 - t1})
    return batch


def token_maps(patch_scores: torch.Tensor, batch: TokenBatch) -> np.ndarray:
    """``(N, M)`` scores -> ``(N, *batch.map_grid)`` float32 maps in (x, y, z) order."""
    if batch.staggered:
        return half_grid_map(patch_scores, batch.solid, batch.grid3d[0])
    return patch_scores.float().reshape(-1, *batch.grid3d).numpy()


def cube_flags(flags: np.ndarray, batch: TokenBatch) -> np.ndarray:
    """``(N, M)`` bool per token -> ``(N, *batch.map_grid)`` (any covering token, when staggered)."""
    if batch.staggered:
        return half_grid_any(flags, batch.grid3d[0])
    return flags.reshape(-1, *batch.grid3d)
