"""codegraph-ad: zero-shot batch anomaly detection (MuSc, CoDeGraph) for images and volumes."""

__version__ = "0.1.0"
