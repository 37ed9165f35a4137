"""codegraph-ad: zero-shot batch anomaly detection (MuSc, CoDeGraph) for images and volumes."""

__version__ = "0.1.0"

from codegraph_ad.api import EvaluationResult, RunResult, detect, evaluate, score_features  # noqa: E402
from codegraph_ad.features.extractor import FeatureExtractor  # noqa: E402
from codegraph_ad.methods import CoDeGraph, MuSc, list_methods, register_method  # noqa: E402
from codegraph_ad.config import (  # noqa: E402
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
    "detect",
    "evaluate",
    "list_methods",
    "register_method",
    "score_features",
]
