"""The benchmark suite: run methods over every category of a dataset and tabulate the metrics."""

from codegraph_ad.suite.config import BenchmarkConfig, ConsistencyConfig
from codegraph_ad.suite.runner import BenchmarkResult, run_benchmark

__all__ = ["BenchmarkConfig", "BenchmarkResult", "ConsistencyConfig", "run_benchmark"]
