"""Readers for labelled dataset layouts and builders of derived benchmarks (SynCA, ConsistAD)."""

from codegraph_ad.datasets.base import LabelledSample
from codegraph_ad.datasets.btad import read_btad_category
from codegraph_ad.datasets.folder import read_labelled_folder
from codegraph_ad.datasets.loco import read_loco_category
from codegraph_ad.datasets.manta import MantaConfig, read_manta_category
from codegraph_ad.datasets.mvtec import read_mvtec_category
from codegraph_ad.datasets.registry import get_reader, list_categories, list_datasets, read_category
from codegraph_ad.datasets.visa import read_visa_category

__all__ = [
    "LabelledSample",
    "MantaConfig",
    "get_reader",
    "list_categories",
    "list_datasets",
    "read_btad_category",
    "read_category",
    "read_labelled_folder",
    "read_loco_category",
    "read_manta_category",
    "read_mvtec_category",
    "read_visa_category",
]
