"""codegraph-ad: zero-shot batch anomaly detection (MuSc, CoDeGraph) for images and volumes."""

from codegraph_ad._version import __version__
from codegraph_ad.api import EvaluationResult, RunResult, detect, evaluate, score_features, score_new
from codegraph_ad.backbones import create_backbone, list_backbones, register_backbone
from codegraph_ad.features.extractor import FeatureExtractor
from codegraph_ad.methods import CoDeGraph, MuSc, list_methods, register_method
from codegraph_ad.config import (
    EngineConfig,
    FeatureConfig,
    GraphConfig,
    LNAMDConfig,
    MSMConfig,
    RsCINConfig,
    RunConfig,
)

__all__ = [
    "CoDeGraph",
    "EngineConfig",
    "EvaluationResult",
    "FeatureConfig",
    "FeatureExtractor",
    "GraphConfig",
    "LNAMDConfig",
    "MSMConfig",
    "MuSc",
    "RsCINConfig",
    "RunConfig",
    "RunResult",
    "__version__",
    "create_backbone",
    "detect",
    "evaluate",
    "list_backbones",
    "list_methods",
    "register_backbone",
    "register_method",
    "score_features",
    "score_new",
]
