"""One entry point over every layout: ``read_category(dataset, root, category)``.

``root`` is the folder the dataset unpacks to (the one holding the categories); see
docs/datasets.md for where each dataset comes from and which folder that is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from codegraph_ad.datasets._layout import category_dirs, resolve_category, subfolders
from codegraph_ad.datasets.base import LabelledSample
from codegraph_ad.datasets.btad import read_btad_category
from codegraph_ad.datasets.folder import is_labelled_folder, read_labelled_folder
from codegraph_ad.datasets.loco import read_loco_category
from codegraph_ad.datasets.manta import read_manta_category
from codegraph_ad.datasets.mvtec import read_mvtec_category
from codegraph_ad.datasets.visa import read_visa_category, visa_objects
from codegraph_ad.errors import InputError

Reader = Callable[[Path, str, Path | None], list[LabelledSample]]


@dataclass(frozen=True)
class DatasetReader:
    """A layout: how to list its categories and read one.

    read(root, category, work_dir): work_dir is where a reader that must write files (MANTA's
    single views) puts them; the others ignore it.
    """

    name: str
    description: str
    categories: Callable[[Path], list[str]]
    read: Reader


def _test_categories(root: Path) -> list[str]:
    return list(category_dirs(root, "test"))


def _by_test_folder(fn: Callable[[Path], list[LabelledSample]]) -> Reader:
    return lambda root, category, work_dir: fn(resolve_category(root, category, "test"))


def _folder_categories(root: Path) -> list[str]:
    if is_labelled_folder(root):
        return [root.name]
    found = [p.name for p in subfolders(root) if is_labelled_folder(p)] if root.is_dir() else []
    if not found:
        raise InputError(f"{root}: no labelled folder (a folder holding 'good/') at or below it")
    return found


def _read_folder(root: Path, category: str, work_dir: Path | None) -> list[LabelledSample]:
    if is_labelled_folder(root) and category == root.name:
        return read_labelled_folder(root)
    return read_labelled_folder(root / category)


def _read_manta(root: Path, category: str, work_dir: Path | None) -> list[LabelledSample]:
    return read_manta_category(resolve_category(root, category, "test"), work_dir)


_READERS: dict[str, DatasetReader] = {
    r.name: r
    for r in (
        DatasetReader("mvtec_ad", "MVTec AD: <category>/test/<defect>, ground_truth/<defect>/<stem>_mask.png",
                      _test_categories, _by_test_folder(read_mvtec_category)),
        DatasetReader("visa", "VisA: split_csv/1cls.csv + <object>/Data/Images/{Normal,Anomaly}",
                      lambda root: visa_objects(root), lambda root, c, w: read_visa_category(root, c)),
        DatasetReader("mvtec_loco", "MVTec LOCO AD: test/good|logical_anomalies|structural_anomalies, "
                      "ground_truth/<defect>/<stem>/*.png (united)",
                      _test_categories, _by_test_folder(read_loco_category)),
        DatasetReader("mpdd", "MPDD: MVTec AD layout", _test_categories, _by_test_folder(read_mvtec_category)),
        DatasetReader("btad", "BTAD: 01|02|03/test/ok|ko, ground_truth/ko/<stem>.png|.bmp",
                      _test_categories, _by_test_folder(read_btad_category)),
        DatasetReader("manta", "MANTA: five tiled views per image; normal -> middle view, "
                      "anomalous -> largest-mask view", _test_categories, _read_manta),
        DatasetReader("folder", "labelled folder: good/ normal, other folders anomalous, optional masks/",
                      _folder_categories, _read_folder),
        DatasetReader("synca", "MVTec-SynCA built by `codegraph-ad make-synca` (MVTec AD layout)",
                      _test_categories, _by_test_folder(read_mvtec_category)),
        DatasetReader("consistad", "ConsistAD built by `codegraph-ad make-consistad` (MVTec AD layout)",
                      _test_categories, _by_test_folder(read_mvtec_category)),
    )
}
_ALIASES = {"mvtec": "mvtec_ad", "loco": "mvtec_loco", "mvtec_synca": "synca"}


def list_datasets() -> list[str]:
    """Names accepted by ``get_reader``."""
    return list(_READERS)


def get_reader(name: str) -> DatasetReader:
    """The reader registered as ``name`` (or an alias); the error lists the known names."""
    key = _ALIASES.get(name, name)
    if key not in _READERS:
        raise InputError(f"unknown dataset {name!r}; known datasets: {', '.join(_READERS)}")
    return _READERS[key]


def list_categories(dataset: str, root: str | Path) -> list[str]:
    """Categories found under ``root`` for this layout (sorted)."""
    cats = get_reader(dataset).categories(Path(root))
    if not cats:
        raise InputError(f"{root}: no {dataset} categories found")
    return cats


def read_category(dataset: str, root: str | Path, category: str,
                  work_dir: str | Path | None = None) -> list[LabelledSample]:
    """Test samples of one category of ``dataset`` stored under ``root``."""
    return get_reader(dataset).read(Path(root), category, Path(work_dir) if work_dir is not None else None)
