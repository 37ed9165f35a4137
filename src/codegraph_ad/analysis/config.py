"""Settings of ``codegraph-ad analyze``; every default is here with its reason."""

from __future__ import annotations

from dataclasses import dataclass

from codegraph_ad.config import documented


@dataclass(frozen=True)
class AnalysisConfig:
    """How the scaling, burnout and tail analyses are measured.

    fit_rank_min, fit_rank_max: ranks used by the power-law fit of the mean growth curve.
        None: up to the run's reference rank k = ceil(k_fraction N), which the thesis
        places inside the power-law region; beyond it a finite batch runs out of
        look-alikes and tau rises again (on bottle at 112 px the whole-curve fit had
        R^2 0.01-0.1, see docs/analysis.md).
    consistent_percentile: an anomalous patch is "consistent" when its MuSc score is below
        this percentile of the normal patches' scores (SPEC section 12, thesis 2.2.3).
    mask_fraction: a patch counts as anomalous when at least this share of its pixels is
        inside the ground-truth mask, normal-image patches are normal; patches of anomalous
        images outside the mask belong to neither group (their label is uncertain).
    hill_references: reference patches (a seeded sample of normal patches) whose
        patch-to-patch similarities feed the Hill plot; 64 keeps the (R, N*M) distance
        block small while the mean curve is already smooth.
    hill_k_max: largest number of order statistics on the Hill plot (capped by the pool).
    hill_plateau: the share of the Hill plot, as fractions of its k range, whose median is
        reported as the tail index (small k is noise-dominated, large k leaves the tail).
    qq_points: quantile levels on the Beta(alpha, 1) Q-Q plot.
    seed: for the reference-patch sample.
    repeated_images: glob patterns (``<defect>/<stem>``, file name or path) naming the images
        that carry one repeated defect; their anomalous patches are a third burnout group.
        Empty: taken from a SynCA manifest when the batch is a SynCA build, else no group.
    """

    fit_rank_min: int = documented(1, "smallest rank used by the power-law fit of the mean growth curve")
    fit_rank_max: int | None = documented(
        None, "largest rank used by the power-law fit (none: the run's reference rank ceil(k_fraction N))")
    consistent_percentile: float = documented(
        80.0, "consistent = anomalous patch with MuSc score below this percentile of normal scores")
    mask_fraction: float = documented(0.5, "share of a patch inside the mask for it to count as anomalous")
    hill_references: int = documented(64, "normal reference patches on the Hill plot")
    hill_k_max: int = documented(500, "largest k on the Hill plot")
    hill_plateau: tuple[float, float] = documented(
        (0.1, 0.5), "share of the Hill plot's k range (from,to) whose median is the reported tail index")
    qq_points: int = documented(100, "quantile levels on the Beta(alpha, 1) Q-Q plot")
    seed: int = documented(0, "seed of the reference-patch sample")
    repeated_images: tuple[str, ...] = documented(
        (), "images carrying one repeated defect (<defect>/<stem>, file name or path glob; comma list, "
            "repeatable); their anomalous patches get their own burnout curve. Empty: the source and "
            "copies of a SynCA build")
