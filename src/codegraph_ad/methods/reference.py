"""Score new images against a finished run's images, without recomputing the batch.

A new image is scored as a member of the run's batch would be by MSM: LNAMD on its tokens;
for every layer and degree the distance of each of its patches to the nearest kept patch of
each reference image (the patches CoDeGraph excluded are removed, as in its final pass);
the mean of the K smallest of those image distances with K = msm_k(N, q), every one of the
N references being "another image"; averaged over layers and degrees. q is the share the
run scored with (MuSc: ``msm.q``; CoDeGraph: ``graph.final_q``). A batch member scored
against the other N - 1 images of its batch gets its MuSc score back (tests/methods).

What does not carry over, on purpose: subset division (a new image is compared with all N
references) and the graph stages (the run's exclusions are used, none are added).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codegraph_ad.config import RunConfig, config_from_dict
from codegraph_ad.engine.cross import cross_minima
from codegraph_ad.engine.msm import msm_k, msm_scores_to_references
from codegraph_ad.engine.rscin import rscin
from codegraph_ad.engine.window import window_bias
from codegraph_ad.errors import ConfigError, InputError
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.features.lnamd import lnamd
from codegraph_ad.io.run_folder import MANIFEST, REFERENCE, RunFolder, read_run_folder
from codegraph_ad.methods.base import ScoreResult, budget_mb, require_cls

# Share of the memory budget the (B, N, M) minima of one group of new images may use.
_MINIMA_SHARE = 0.25


def reference_q(config: RunConfig) -> float:
    """The MSM share a run scored its final maps with: MuSc's ``msm.q``, CoDeGraph's ``graph.final_q``."""
    if config.method == "musc":
        return config.msm.q
    if config.method == "codegraph":
        return config.graph.final_q
    raise ConfigError(f"method {config.method!r}: scoring new images against a run is defined for musc and "
                      "codegraph runs (MSM against the batch)")


def screening_to_references(query_cls: torch.Tensor, ref_cls: torch.Tensor, percent: float) -> torch.Tensor | None:
    """``(B, N)`` bool: each new image keeps its ``percent``% most [CLS]-similar references,
    ceil(percent / 100 * N) of them: the count a batch member of N + 1 images keeps."""
    if percent >= 100.0:
        return None
    return _nearest_mask(query_cls, ref_cls, max(1, int(np.ceil(percent / 100.0 * ref_cls.shape[0]))))


def _nearest_mask(query_desc: torch.Tensor, ref_desc: torch.Tensor, keep: int) -> torch.Tensor:
    """``(B, N)`` bool: each query's ``keep`` most cosine-similar references."""
    unit_q = torch.nn.functional.normalize(query_desc.float(), dim=1)
    unit_r = torch.nn.functional.normalize(ref_desc.float(), dim=1)
    mask = torch.zeros((query_desc.shape[0], ref_desc.shape[0]), dtype=torch.bool)
    if keep > 0:
        mask.scatter_(1, torch.topk(unit_q @ unit_r.T, keep, dim=1).indices, True)
    return mask


def fixed_k_to_references(query_desc: torch.Tensor, ref_desc: torch.Tensor, k: int, random_share: float,
                          seed: int) -> torch.Tensor | None:
    """``(B, N)`` bool: the K references a new image keeps when the run used fixed K
    (``--references``), chosen as the run chose its images' (engine/plan.py ``fixed_k_plan``):
    its K (1 - share) nearest by the run's descriptor plus a seeded random share of the rest.
    None where K covers every reference (a batch member of N + 1 images has N others)."""
    n = ref_desc.shape[0]
    if k >= n:
        return None
    n_random = int(round(random_share * k))
    mask = _nearest_mask(query_desc, ref_desc, k - n_random)
    rng = np.random.default_rng(seed)
    for b in range(mask.shape[0]):  # one small draw per new image
        pool = np.flatnonzero(~mask[b].numpy())
        mask[b, torch.from_numpy(rng.choice(pool, size=min(n_random, pool.size), replace=False))] = True
    return mask


@dataclass
class ReferenceSet:
    """The images new ones are scored against: their tokens, [CLS] vectors and excluded patches.

    layers: ``(N, L, M, C)`` float32 tokens; cls: ``(N, C)`` or None; excluded: ``(N, M)``
    bool patches that may not serve as neighbours (CoDeGraph), or None; config: the run's
    configuration (degrees, q, engine, RsCIN); raw_image_scores: ``(N,)`` the run's image
    scores before RsCIN, needed only when RsCIN is on; source: where it came from.
    """

    layers: torch.Tensor
    cls: torch.Tensor | None
    grid: tuple[int, int]
    config: RunConfig
    excluded: torch.Tensor | None = None
    raw_image_scores: np.ndarray | None = None
    source: str = "features"

    @classmethod
    def from_features(cls, features: FeatureSet, config: RunConfig, excluded: Any = None,
                      raw_image_scores: Any = None, source: str = "features") -> "ReferenceSet":
        """A reference set held in memory (a batch's FeatureSet, e.g. minus one image)."""
        ex = None if excluded is None else torch.as_tensor(np.asarray(excluded, dtype=bool))
        if ex is not None and tuple(ex.shape) != (features.n_images, features.layers.shape[2]):
            raise InputError(f"excluded must be (N, M) = ({features.n_images}, {features.layers.shape[2]}), "
                             f"got {tuple(ex.shape)}")
        raw = None if raw_image_scores is None else np.asarray(raw_image_scores, dtype=np.float64)
        reference_q(config)
        return cls(features.layers.float(), None if features.cls is None else features.cls.float(),
                   tuple(features.grid), config, ex, raw, source)

    @classmethod
    def from_run(cls, run: str | Path | RunFolder) -> "ReferenceSet":
        """The reference set a finished run stored (reference.npz, excluded.npy, its config)."""
        folder = run if isinstance(run, RunFolder) else read_run_folder(run)
        stored = folder.reference()
        if stored is None:
            raise InputError(f"{folder.root}: the run stored no reference set ({REFERENCE}); rerun detect with "
                             "--store-reference (the default) to score new images against it")
        layers, cls_tokens = stored
        config = config_from_dict(RunConfig, folder.config)
        if len(folder.grid) != 2:
            raise InputError(f"{folder.root / MANIFEST}: grid {folder.grid} is not an image run's patch grid")
        features = FeatureSet(torch.from_numpy(layers.astype(np.float32)),
                              None if cls_tokens is None else torch.from_numpy(cls_tokens.astype(np.float32)),
                              (int(folder.grid[0]), int(folder.grid[1])))
        raw = None
        if config.rscin.enabled:
            raw = np.array([r.raw_score if r.raw_score is not None else r.score for r in folder.score_rows])
        return cls.from_features(features, config, folder.excluded, raw, str(folder.root))

    @property
    def n_images(self) -> int:
        return int(self.layers.shape[0])

    @property
    def q(self) -> float:
        return reference_q(self.config)

    @property
    def k(self) -> int:
        """Image distances averaged per patch when every reference is used."""
        return msm_k(self.n_images, self.q)

    def score_new(self, features: FeatureSet) -> ScoreResult:
        """Patch and image scores of new images ``features`` (any number, one or more)."""
        self._check(features)
        engine = self.config.engine
        budget = budget_mb(engine)
        b, n, m = features.n_images, self.n_images, self.layers.shape[2]
        allowed = None
        if engine.references is not None:  # fixed K takes precedence, as in the run's plan
            allowed = fixed_k_to_references(*self._descriptors(features), engine.references,
                                            engine.random_references, engine.seed)
        elif engine.screening_percent < 100.0:
            allowed = screening_to_references(require_cls(features.cls, "[CLS] screening"),
                                              require_cls(self.cls, "[CLS] screening of the references"),
                                              engine.screening_percent)
        bias = None if engine.window is None else window_bias(self.grid, engine.window)
        group = max(1, int(budget * 1e6 * _MINIMA_SHARE // (4 * n * m)))
        total = torch.zeros((b, m), dtype=torch.float32)
        maps = 0
        for li in range(self.layers.shape[1]):
            for r in self.config.lnamd.degrees:
                refs = lnamd(self.layers[:, li], self.grid, r)
                queries = lnamd(features.layers[:, li], self.grid, r)
                for s in range(0, b, group):
                    dist = cross_minima(queries[s : s + group], refs, self.excluded, budget, bias)
                    part = None if allowed is None else allowed[s : s + group]
                    total[s : s + group] += msm_scores_to_references(dist, self.q, part)
                maps += 1
        patch = total / maps
        raw = patch.max(dim=1).values.double().numpy()
        final = self._rscin(raw, features)
        diagnostics = {"method": self.config.method, "reference": {
            "source": self.source, "images": n, "q": self.q, "k": self.k,
            "excluded_patches": 0 if self.excluded is None else int(self.excluded.sum())}}
        return ScoreResult(patch, final, raw, self.grid, None, diagnostics)

    def _descriptors(self, features: FeatureSet) -> tuple[torch.Tensor, torch.Tensor]:
        """(new images', references') global descriptors for fixed K: [CLS], else the
        mean-pooled last-layer tokens (methods/base.py ``reference_plan``)."""
        if features.cls is not None and self.cls is not None:
            return features.cls, self.cls
        return features.layers[:, -1].float().mean(dim=1), self.layers[:, -1].float().mean(dim=1)

    def _rscin(self, raw: np.ndarray, features: FeatureSet) -> np.ndarray:
        """RsCIN (when the run used it) over the references and the new images together."""
        cfg = self.config.rscin
        if not cfg.enabled:
            return raw.copy()
        if self.raw_image_scores is None:
            raise InputError("RsCIN (rscin=True) needs the references' raw image scores (raw_image_scores)")
        cls_all = torch.cat([require_cls(self.cls, "RsCIN of the references"),
                             require_cls(features.cls, "RsCIN (rscin=True)")]).double().numpy()
        both = rscin(np.concatenate([self.raw_image_scores, raw]), cls_all, cfg.k_list)
        return both[self.n_images:]

    def _check(self, features: FeatureSet) -> None:
        if features.n_images < 1:
            raise InputError("no new images to score")
        if tuple(features.grid) != tuple(self.grid):
            raise InputError(f"new images have a {tuple(features.grid)} patch grid, the reference set "
                             f"({self.source}) {tuple(self.grid)}: extract them at the run's image size")
        if tuple(features.layers.shape[1:]) != tuple(self.layers.shape[1:]):
            raise InputError(f"new images' tokens {tuple(features.layers.shape[1:])} differ from the reference "
                             f"set's {tuple(self.layers.shape[1:])} (layers, patches, channels): same backbone "
                             "and layers needed")
