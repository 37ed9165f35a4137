"""Flag anomalous images from the batch alone: a robust model of the normal image scores.

A zero-shot batch has no labelled anomaly to set a threshold on (anomalib's adaptive
threshold, fitted on labels, degenerates to the minimum score there). What the batch does
have is many normal images whose scores scatter around a common level; a model of that
scatter that the anomalous minority cannot drag along gives a threshold with a stated
false-alarm rate:

- ``mad``: the median and the median absolute deviation (scaled by 1.4826 to a Gaussian
  sigma) are unmoved by anything less than half of the batch.
- ``gmm``: one to ``GMM_MAX_COMPONENTS`` Gaussians fitted to the scores, the count chosen by
  BIC (as the pseudo-masks choose theirs, thesis chapter 6); the normal component is the one
  with the lowest mean among those holding at least ``MIN_NORMAL_WEIGHT`` of the batch
  (normal images score lowest, and unlike the median this holds when most of the batch is
  anomalous, as in MVTec's test sets). Up to three components because a batch's anomalies
  are seldom one Gaussian (several defect types, a repeated defect's copies): with two, a
  batch of 18% good images under a broad spread of anomalies was fitted by one Gaussian and
  nothing was flagged (docs/decisions.md).

Either model is estimated from a sample of ``n`` normal images (gmm: the component's weight
times the batch; mad: the batch), so the threshold is the one-sided prediction bound of a
new normal score, ``center + t(1 - far; n - 1) * sqrt(1 + 1/n) * sigma``, not the plug-in
Gaussian quantile, which flags more than ``far`` of the normal images when ``n`` is a few
dozen. ``gmm`` is the default: the test sets of MVTec and MPDD are mostly anomalous, and there
the median lands among the anomalies. Below ``GMM_MIN_IMAGES`` scores it uses ``mad``. A fixed
``threshold`` overrides both. An image is flagged when its score is strictly above
the threshold, so a batch of equal scores flags nothing. Measured in docs/decisions.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import t as student_t

from codegraph_ad.config import DecisionConfig
from codegraph_ad.errors import InputError

MAD_TO_SIGMA = 1.4826  # 1 / Phi^-1(3/4): the MAD of a Gaussian is 0.6745 sigma
GMM_MIN_IMAGES = 8  # below this a second component has too few points to be estimated
# A component holding less of the batch is not taken for the normal images even when its mean
# is lowest: a handful of unusually low normal scores is not a model of the normal ones. Not
# higher: the matrix's 35%-copy bottle batches hold 20 good images of 128 (15.6%), and at 0.15
# the fitted weight of their component fell under the floor and the copies' mode was taken
# for the normal one (448 px a_35: 1 of 108 anomalous images flagged; docs/decisions.md).
MIN_NORMAL_WEIGHT = 0.10
GMM_MAX_COMPONENTS = 3  # normal images + up to two modes of anomalies; BIC picks fewer when they fit
# EM from one k-means start found a local optimum that merged the good images into a broad
# component (bottle, 113 images, 20 good); ten starts found the good mode. Seeded: reproducible.
GMM_RESTARTS = 10


@dataclass(frozen=True)
class Decision:
    """The flags of one batch and how they were drawn.

    anomalous: ``(N,)`` bool, score > threshold. rule: ``mad``, ``gmm`` or ``fixed`` (a
    user's threshold). center / scale: the normal model's location and sigma (None for
    ``fixed``). false_alarm_rate: the requested rate (None for ``fixed``). normal_count: the
    number of images the normal model was estimated from (gmm: its component's weight times
    the batch size).
    """

    anomalous: np.ndarray
    threshold: float
    rule: str
    false_alarm_rate: float | None
    center: float | None = None
    scale: float | None = None
    normal_count: float | None = None

    @property
    def n_flagged(self) -> int:
        return int(self.anomalous.sum())

    def to_dict(self) -> dict[str, Any]:
        """The run-level record (scores.json's ``decision``); the flags go in the rows."""
        return {"threshold": self.threshold, "rule": self.rule, "false_alarm_rate": self.false_alarm_rate,
                "normal_center": self.center, "normal_scale": self.scale, "normal_count": self.normal_count,
                "n_flagged": self.n_flagged, "n_images": int(self.anomalous.size)}


def _scores(scores: Any) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64).ravel()
    if x.size == 0:
        raise InputError("cannot decide on an empty batch of scores")
    if not np.all(np.isfinite(x)):
        raise InputError("image scores hold NaN or infinite values; no threshold can be fitted")
    return x


def mad_model(scores: Any) -> tuple[float, float, float]:
    """(median, 1.4826 * MAD, N) of the scores: location, sigma and sample size of the normal ones."""
    x = _scores(scores)
    center = float(np.median(x))
    return center, MAD_TO_SIGMA * float(np.median(np.abs(x - center))), float(x.size)


def gmm_model(scores: Any, seed: int = 0) -> tuple[float, float, float]:
    """(mean, sigma, images) of the normal component of a 1 to ``GMM_MAX_COMPONENTS`` Gaussian
    mixture chosen by BIC: the lowest mean among the components holding ``MIN_NORMAL_WEIGHT``
    or more; images is its weight times the number of scores.

    Fewer than ``GMM_MIN_IMAGES`` scores or no spread: ``mad_model`` (a mean and std of a
    handful of scores would take their outlier in).
    """
    from sklearn.mixture import GaussianMixture

    x = _scores(scores)
    spread = float(x.max() - x.min())
    if x.size < GMM_MIN_IMAGES or spread <= 1e-12 * max(1.0, abs(float(x.mean()))):
        return mad_model(x)
    data = x[:, None]
    fits = []
    for k in range(1, GMM_MAX_COMPONENTS + 1):
        gm = GaussianMixture(n_components=k, random_state=seed, n_init=GMM_RESTARTS,
                             reg_covar=1e-6 * float(x.var()) + 1e-12)
        gm.fit(data)
        fits.append((float(gm.bic(data)), gm))
    _, best = min(fits, key=lambda t: t[0])
    heavy = [j for j in range(best.n_components) if best.weights_[j] >= MIN_NORMAL_WEIGHT]
    i = min(heavy or [int(np.argmax(best.weights_))], key=lambda j: float(best.means_[j, 0]))
    return (float(best.means_[i, 0]), float(np.sqrt(best.covariances_.ravel()[i])),
            float(best.weights_[i]) * x.size)


def prediction_factor(false_alarm_rate: float, n: float) -> float:
    """``t(1 - rate; n - 1) * sqrt(1 + 1/n)``: how many sigmas above a mean estimated from
    ``n`` Gaussian samples a new one exceeds with probability ``rate``."""
    n = max(float(n), 2.0)
    return float(student_t.ppf(1.0 - false_alarm_rate, n - 1.0)) * float(np.sqrt(1.0 + 1.0 / n))


def fitted_threshold(scores: Any, false_alarm_rate: float,
                     rule: str = "mad") -> tuple[float, float, float, float]:
    """(threshold, center, sigma, n): the prediction bound ``center + prediction_factor * sigma``
    of the normal model under ``rule``, estimated from ``n`` images."""
    if rule == "mad":
        center, sigma, n = mad_model(scores)
    elif rule == "gmm":
        center, sigma, n = gmm_model(scores)
    else:
        raise InputError(f"unknown decision rule {rule!r} (mad, gmm)")
    return center + prediction_factor(false_alarm_rate, n) * sigma, center, sigma, n


def decide(scores: Any, config: DecisionConfig = DecisionConfig()) -> Decision:
    """Flag the images of one batch: score above the fitted (or the configured) threshold."""
    x = _scores(scores)
    if config.threshold is not None:
        t = float(config.threshold)
        return Decision(x > t, t, "fixed", None)
    t, center, sigma, n = fitted_threshold(x, config.false_alarm_rate, config.rule)
    return Decision(x > t, t, config.rule, config.false_alarm_rate, center, sigma, n)


__all__ = ["Decision", "decide", "fitted_threshold", "gmm_model", "mad_model", "prediction_factor"]
