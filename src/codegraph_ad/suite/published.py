"""Published numbers, for a clearly separate reference section of the benchmark report.

These are other people's measurements (percent), copied with their source; they are never
mixed with measured rows. A row is "comparable" to a run only when the dataset and the
backbone match; the embedded ViT-S default has no published rows.

Sources: docs/REFERENCE.md of this project (MuSc per-category reruns and backbone means) and
the thesis tables 3.1-3.3 (ViT-L/14@336, MuSc protocol). In the thesis's text copy the
dataset label of the second block of table 3.1 was lost; it is MVTec-SynCA by the order in
which the text introduces the datasets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

COLUMNS = ("image_auroc", "image_f1_max", "image_ap", "pixel_auroc", "pixel_f1_max", "pixel_ap", "pixel_aupro")
_THESIS = "Le-Gia 2025 thesis, table 3.1-3.3"
_REF = "MuSc official code rerun (docs/REFERENCE.md)"
_CLIP_L = "clip_vitl14_336"


@dataclass(frozen=True)
class PublishedRow:
    dataset: str  # registry name of the dataset
    subset: str  # a category, or which mean
    method: str
    backbone: str  # registry name of the backbone
    resolution: str
    source: str
    metrics: dict[str, float] = field(default_factory=dict)  # percent; keys from COLUMNS + rates


def _row(dataset: str, subset: str, method: str, backbone: str, resolution: str, source: str,
         values: tuple[float | None, ...], keys: tuple[str, ...] = COLUMNS) -> PublishedRow:
    return PublishedRow(dataset, subset, method, backbone, resolution, source,
                        {k: v for k, v in zip(keys, values) if v is not None})


_AUROC_SEG_F1_PRO = ("image_auroc", "pixel_auroc", "pixel_f1_max", "pixel_aupro")
_RATES = ("exclusion_rate", "capture_rate")

PUBLISHED: tuple[PublishedRow, ...] = (
    _row("mvtec_ad", "bottle", "musc", _CLIP_L, "518", _REF, (99.92, 99.21, 99.98, 98.48, 79.17, 83.04, 96.10)),
    _row("mvtec_ad", "cable", "musc", _CLIP_L, "518", _REF, (98.99, 97.30, 99.42, 95.76, 60.97, 57.70, 89.62)),
    _row("mvtec_ad", "metal_nut", "musc", _CLIP_L, "518", _REF, (96.92, 97.38, 99.25, 86.12, 46.22, 47.54, 89.34)),
    _row("mvtec_ad", "pill", "musc", _CLIP_L, "518", _REF, (96.24, 95.89, 99.31, 97.47, 65.54, 67.25, 98.01)),
    _row("mvtec_ad", "mean of 15", "musc", _CLIP_L, "518", _REF, (97.77, 97.37, 99.07, 97.11, 62.16, 62.26, 93.45)),
    _row("mvtec_ad", "mean of 15", "musc", "dinov2_vitb14", "518", _REF, (96.31, 98.07, 64.65, 95.59),
         _AUROC_SEG_F1_PRO),
    _row("mvtec_ad", "mean of 15", "musc", "dinov2_vitl14", "518", _REF, (97.08, 98.34, 66.15, 96.16),
         _AUROC_SEG_F1_PRO),
    _row("mvtec_ad", "mean of 15", "musc", "clip_vitb16", "512", _REF, (94.20, 97.09, 61.24, 91.67),
         _AUROC_SEG_F1_PRO),
    _row("mvtec_ad", "mean of 15", "codegraph", _CLIP_L, "518", _THESIS, (98.3, 66.8, 68.1),
         ("image_auroc", "pixel_f1_max", "pixel_ap")),
    _row("mvtec_ad", "mean of 15", "codegraph", "dinov2_vitl14", "518", _THESIS, (69.1, 71.9),
         ("pixel_f1_max", "pixel_ap")),
    _row("mvtec_ad", "MVTec-CA mean (cable, metal_nut, pill)", "musc", _CLIP_L, "518", _THESIS,
         (97.2, 97.0, 99.3, 93.3, 58.9, 58.4, 92.8)),
    _row("mvtec_ad", "MVTec-CA mean (cable, metal_nut, pill)", "codegraph", _CLIP_L, "518", _THESIS,
         (98.5, 97.8, 99.6, 98.1, 73.8, 77.2, 95.4)),
    _row("mvtec_ad", "MVTec-CA mean (cable, metal_nut, pill)", "codegraph", _CLIP_L, "518", _THESIS, (6.9, 73.9),
         _RATES),
    _row("mvtec_ad", "MVTec-IA mean (other 12)", "codegraph", _CLIP_L, "518", _THESIS, (0.3, 0.9), _RATES),
    _row("synca", "mean", "musc", _CLIP_L, "518", _THESIS, (88.8, 92.3, 96.8, 90.7, 50.8, 48.3, 82.9)),
    _row("synca", "mean", "codegraph", _CLIP_L, "518", _THESIS, (96.8, 97.2, 99.0, 97.2, 63.2, 63.3, 91.1)),
    _row("consistad", "mean", "musc (q 0.1)", _CLIP_L, "518", _THESIS, (88.9, 84.8, 88.9, 81.7, 44.6, 43.6, 78.9)),
    _row("consistad", "mean", "codegraph", _CLIP_L, "518", _THESIS, (91.0, 87.9, 90.3, 86.9, 55.9, 57.5, 82.5)),
    _row("consistad", "mean", "codegraph", _CLIP_L, "518", _THESIS, (4.8, 55.2), _RATES),
    _row("visa", "mean", "musc", _CLIP_L, "518", _THESIS, (91.6, 89.1, 92.2, 98.7, 48.3, 45.4, 91.4)),
    _row("visa", "mean", "codegraph", _CLIP_L, "518", _THESIS, (91.6, 89.0, 92.2, 98.7, 48.3, 45.4, 91.4)),
    _row("visa", "mean", "codegraph", _CLIP_L, "518", _THESIS, (0.05, 0.0), _RATES),
)


def published_for(dataset: str, backbone: str) -> tuple[list[PublishedRow], list[PublishedRow]]:
    """(rows matching dataset and backbone, rows of the dataset with other backbones)."""
    rows = [r for r in PUBLISHED if r.dataset == dataset]
    return [r for r in rows if r.backbone == backbone], [r for r in rows if r.backbone != backbone]
