"""Mutual-similarity engine: per-pair minima, MSM scores, RsCIN."""

from codegraph_ad.engine.msm import msm_k, msm_scores
from codegraph_ad.engine.mutual import PairMinima, pair_minima, refine_minima
from codegraph_ad.engine.rscin import rscin

__all__ = ["PairMinima", "msm_k", "msm_scores", "pair_minima", "refine_minima", "rscin"]
