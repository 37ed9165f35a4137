"""Readers for labelled dataset layouts and builders of derived benchmarks."""

from codegraph_ad.datasets.base import LabelledSample
from codegraph_ad.datasets.mvtec import read_mvtec_category

__all__ = ["LabelledSample", "read_mvtec_category"]
