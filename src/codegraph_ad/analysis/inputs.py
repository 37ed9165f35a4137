"""The arrays the analyses read, recomputed from a run's images or loaded from a cache.

A run folder keeps scores, not distances: the analyses need the per-pair minima of every
layer at r = 1 (the mutual similarity vectors), the nearest patch-to-patch distances of a
sample of normal reference patches (Hill plot) and, for the burnout groups, MuSc patch
scores. Computing them costs a backbone pass and the first pass of MuSc, so they are
saved next to the analysis (``analysis_inputs.npz``) with a key of everything they depend
on, and reused when the key matches.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from codegraph_ad.analysis.config import AnalysisConfig
from codegraph_ad.analysis.tail import smallest_positive
from codegraph_ad.config import RunConfig, config_to_dict
from codegraph_ad.engine.msm import msm_scores
from codegraph_ad.engine.mutual import pair_minima, similarity_to_distance
from codegraph_ad.engine.threads import thread_budget
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.features.lnamd import lnamd
from codegraph_ad.io.atomic import atomic_write
from codegraph_ad.methods.base import budget_mb

CACHE_NAME = "analysis_inputs.npz"


@dataclass
class AnalysisInputs:
    """minima: ``(L, N, N, M)`` float32 per-pair minima at r = 1, self at inf.
    hill_dists: ``(L, R, K)`` ascending positive distances from R reference patches to the
        normal patches of the other images (NaN padded).
    references: ``(R, 2)`` (image, patch) of the reference patches.
    musc_scores: ``(N, M)`` MuSc patch scores, or None when not needed (no masks).
    """

    minima: np.ndarray
    hill_dists: np.ndarray
    references: np.ndarray
    musc_scores: np.ndarray | None


def cache_key(paths: list[str], run_config: RunConfig, config: AnalysisConfig, normal: np.ndarray, need_musc: bool) -> str:
    """Hash of everything the inputs depend on: images, features, MSM, sampling, normal set."""
    blob = json.dumps(
        {
            "paths": paths,
            "features": config_to_dict(run_config.features),
            "degrees": list(run_config.lnamd.degrees),
            "q": run_config.msm.q,
            "precision": run_config.engine.precision,
            "hill": [config.hill_references, config.hill_k_max, config.seed],
            "musc": need_musc,
            "normal": hashlib.sha256(np.packbits(normal).tobytes()).hexdigest(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def load_cached(path: Path, key: str) -> AnalysisInputs | None:
    """The cached inputs when ``path`` exists and was written for ``key``, else None."""
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        if str(z["key"]) != key:
            return None
        musc = z["musc_scores"] if z["has_musc"] else None
        return AnalysisInputs(z["minima"], z["hill_dists"], z["references"], musc)


def save_cached(path: Path, key: str, inputs: AnalysisInputs) -> None:
    def write(fh) -> None:
        buf = io.BytesIO()
        np.savez(
            buf,
            key=np.array(key),
            minima=inputs.minima,
            hill_dists=inputs.hill_dists,
            references=inputs.references,
            has_musc=np.array(inputs.musc_scores is not None),
            musc_scores=inputs.musc_scores if inputs.musc_scores is not None else np.zeros((0, 0), np.float32),
        )
        fh.write(buf.getvalue())

    atomic_write(path, write)


def sample_references(normal: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``(R, 2)`` (image, patch) pairs drawn without replacement from the normal patches."""
    candidates = np.argwhere(normal)
    if len(candidates) == 0:
        raise ValueError("no normal patch to sample Hill reference patches from")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(candidates), size=min(count, len(candidates)), replace=False)
    return candidates[np.sort(pick)]


def reference_distances(unit: torch.Tensor, normal: np.ndarray, references: np.ndarray, k: int) -> np.ndarray:
    """``(R, k)`` smallest distances of each reference patch to the normal patches of the
    other images (one (R, P) block product; the reference's own image is left out, since
    neighbouring patches of one image are correlated, not samples of the normal law)."""
    n, m, _ = unit.shape
    pool_idx = np.flatnonzero(normal.reshape(-1))
    pool = unit.reshape(n * m, -1)[torch.from_numpy(pool_idx)]
    refs = unit[torch.from_numpy(references[:, 0]), torch.from_numpy(references[:, 1])]
    dist = similarity_to_distance(refs @ pool.T).numpy()
    same = (pool_idx // m)[None, :] == references[:, 0:1]
    dist[same] = np.inf
    return smallest_positive(dist, k)


def compute_inputs(
    features: FeatureSet,
    run_config: RunConfig,
    config: AnalysisConfig,
    normal: np.ndarray,
    need_musc: bool,
    progress: bool = False,
) -> AnalysisInputs:
    """Per-layer r = 1 minima, Hill reference distances and (when asked) MuSc scores."""
    n, n_layers, m, _ = features.layers.shape
    engine = run_config.engine
    references = sample_references(normal, config.hill_references, config.seed)
    k = min(config.hill_k_max + 1, int(normal.sum()))
    minima = np.empty((n_layers, n, n, m), dtype=np.float32)
    hill = np.empty((n_layers, len(references), max(k, 2)), dtype=np.float64)
    degrees = run_config.lnamd.degrees if need_musc else (1,)
    musc_total = torch.zeros((n, m), dtype=torch.float32)
    budget = budget_mb(engine)
    with thread_budget(engine.threads):
        for li in range(n_layers):
            for r in sorted(set(degrees) | {1}):
                unit = lnamd(features.layers[:, li], features.grid, r)
                dist = pair_minima(unit, budget_mb=budget, precision=engine.precision,
                                   progress=progress, desc=f"analysis layer {li + 1} r={r}").dist
                if r == 1:
                    minima[li] = dist.numpy()
                    hill[li] = reference_distances(unit, normal, references, hill.shape[2])
                if need_musc and r in run_config.lnamd.degrees:
                    musc_total += msm_scores(dist, run_config.msm.q)
    musc = (musc_total / (n_layers * len(run_config.lnamd.degrees))).numpy() if need_musc else None
    return AnalysisInputs(minima, hill, references, musc)
