"""Flag anomalous pixels from the batch alone: a truncated Gaussian-mixture threshold (SPEC 10).

The pixel-level counterpart of decision.py. Batch scores are averages of many
nearest-neighbour distances, so the normal pixels of a map are close to Gaussian (thesis
Fig. 6.1). Fitting 1 or 2 Gaussians (BIC) to the scores below the q-quantile keeps the rare
anomalous tail out of the fit; the cut of the most anomalous component,
``max_k mu_k + z_(1-beta) sigma_k``, then separates anomalous pixels without any labelled
validation data.

Two users: ``detect`` / ``evaluate`` / ``score`` write the masks of the images they flag
(docs/decisions.md), and distill/ trains single-image models on the masks of every image
(its ``pseudomask`` command). Both fit one threshold per batch the same way
(``map_sample`` + ``fit_threshold``), so a run's masks are the ones ``pseudomask`` draws
from that run with the same settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

from codegraph_ad.config import PseudoMaskConfig


@dataclass(frozen=True)
class ThresholdFit:
    """One fitted mixture and its cut.

    means, stds, weights: per component (length n_components). cuts: mu_k + z sigma_k.
    bics: BIC of each candidate component count 1..max_components.
    """

    threshold: float
    n_components: int
    means: tuple[float, ...]
    stds: tuple[float, ...]
    weights: tuple[float, ...]
    cuts: tuple[float, ...]
    bics: tuple[float, ...]
    n_fit: int
    truncation: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ThresholdFit:
        """The inverse of ``to_dict`` (JSON lists back to tuples)."""
        def floats(key: str) -> tuple[float, ...]:
            return tuple(float(v) for v in d[key])

        return cls(float(d["threshold"]), int(d["n_components"]), floats("means"), floats("stds"),
                   floats("weights"), floats("cuts"), floats("bics"), int(d["n_fit"]), float(d["truncation"]))


def _sample(values: np.ndarray, max_samples: int, rng: np.random.Generator) -> np.ndarray:
    if values.size <= max_samples:
        return values
    return values[rng.choice(values.size, size=max_samples, replace=False)]


def fit_threshold(scores: np.ndarray, config: PseudoMaskConfig = PseudoMaskConfig()) -> ThresholdFit:
    """Fit the truncated mixture to ``scores`` (any shape, finite) and return its threshold."""
    from sklearn.mixture import GaussianMixture

    config.validate()
    flat = np.asarray(scores, dtype=np.float64).ravel()
    if flat.size == 0:
        raise ValueError("cannot fit a pseudo-mask threshold to an empty anomaly map")
    if not np.all(np.isfinite(flat)):
        raise ValueError("anomaly map holds NaN or infinite values")
    rng = np.random.default_rng(config.seed)
    flat = _sample(flat, config.max_fit_samples, rng)
    cut = float(np.quantile(flat, config.q))
    kept = flat[flat <= cut]
    z = float(norm.ppf(1.0 - config.beta))
    spread = float(kept.max() - kept.min()) if kept.size else 0.0
    if kept.size < 2 or spread <= 1e-12 * max(1.0, abs(float(kept.mean()))):
        # A constant map has no normal spread to measure: nothing stands out from it, so the
        # cut is its largest kept value (a mean could round below the constant itself).
        top = float(kept.max()) if kept.size else cut
        mu = float(kept.mean()) if kept.size else cut
        return ThresholdFit(top, 1, (mu,), (0.0,), (1.0,), (top,), (), int(kept.size), cut)
    x = kept[:, None]
    fits = []
    for k in range(1, min(config.max_components, kept.size) + 1):
        gm = GaussianMixture(n_components=k, covariance_type="full", random_state=config.seed, reg_covar=1e-12
                             + 1e-6 * float(kept.var()))
        gm.fit(x)
        fits.append((float(gm.bic(x)), gm))
    _, best = min(fits, key=lambda t: t[0])
    means = best.means_.ravel()
    stds = np.sqrt(best.covariances_.ravel())
    cuts = means + z * stds
    return ThresholdFit(
        threshold=float(cuts.max()),
        n_components=int(best.n_components),
        means=tuple(float(v) for v in means),
        stds=tuple(float(v) for v in stds),
        weights=tuple(float(v) for v in best.weights_.ravel()),
        cuts=tuple(float(v) for v in cuts),
        bics=tuple(b for b, _ in fits),
        n_fit=int(kept.size),
        truncation=cut,
    )


def pooled_sample(maps: Sequence[np.ndarray], max_samples: int, seed: int = 0) -> np.ndarray:
    """Up to ``max_samples`` scores drawn evenly from every map (each map weighs the same)."""
    rng = np.random.default_rng(seed)
    per_map = max(1, max_samples // max(1, len(maps)))
    return np.concatenate([_sample(np.asarray(m, dtype=np.float64).ravel(), per_map, rng) for m in maps])


def pseudo_masks(
    maps: Sequence[np.ndarray], config: PseudoMaskConfig = PseudoMaskConfig()
) -> tuple[list[np.ndarray], list[ThresholdFit]]:
    """Binary masks ``map > threshold`` for every map, and the fit behind each threshold.

    With ``scope='batch'`` one fit over the pooled maps serves every map (the same object is
    returned for each); with ``scope='image'`` each map gets its own.
    """
    config.validate()
    if not len(maps):
        raise ValueError("no anomaly maps to threshold")
    if config.scope == "batch":
        pooled = pooled_sample(maps, config.max_fit_samples, config.seed)
        shared = fit_threshold(pooled, config)
        fits = [shared] * len(maps)
    else:
        fits = [fit_threshold(m, config) for m in maps]
    masks = [np.asarray(m) > f.threshold for m, f in zip(maps, fits)]
    return masks, fits


def map_sample(amap: np.ndarray, index: int, n_maps: int, config: PseudoMaskConfig) -> np.ndarray:
    """Map ``index``'s share of a batch fit: ``max_fit_samples // n_maps`` pixels drawn with
    seed ``config.seed + index``. Each map weighs the same and is drawn on its own, so a
    batch of camera-resolution maps is streamed, never held (the run folder's maps are
    read one at a time, detect's are sampled as they are written)."""
    return pooled_sample([amap], max(1, config.max_fit_samples // max(1, n_maps)), config.seed + index)


def batch_fit(maps: Iterable[np.ndarray], n_maps: int, config: PseudoMaskConfig = PseudoMaskConfig()) -> ThresholdFit:
    """One threshold for a batch of ``n_maps`` maps, from ``map_sample`` of each in turn."""
    samples = [map_sample(m, i, n_maps, config) for i, m in enumerate(maps)]
    if not samples:
        raise ValueError("no anomaly maps to threshold")
    return fit_threshold(np.concatenate(samples), config)


@dataclass(frozen=True)
class PixelDecision:
    """The pixel threshold a run's masks were cut with and where it came from.

    source: ``batch`` (fitted on the maps of this run) or ``reference`` (the threshold of the
    run that ``score`` judged new images against, as their image flags use its threshold).
    """

    fit: ThresholdFit
    config: PseudoMaskConfig
    source: str = "batch"

    @property
    def threshold(self) -> float:
        return self.fit.threshold

    def mask(self, amap: np.ndarray) -> np.ndarray:
        """``(H, W)`` bool: the pixels of ``amap`` strictly above the threshold."""
        return np.asarray(amap) > self.threshold

    def to_dict(self) -> dict[str, Any]:
        """The run-level record (scores.json's ``pixel_decision``)."""
        return {"threshold": self.threshold, "source": self.source, "config": asdict(self.config),
                "fit": self.fit.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PixelDecision:
        return cls(ThresholdFit.from_dict(d["fit"]), PseudoMaskConfig(**d.get("config", {})),
                   str(d.get("source", "batch")))


__all__ = ["PixelDecision", "ThresholdFit", "batch_fit", "fit_threshold", "map_sample", "pooled_sample",
           "pseudo_masks"]
