"""The common record every dataset reader returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LabelledSample:
    """One test image with its label.

    label: 0 normal, 1 anomalous. mask_paths: ground-truth mask files (union taken);
    empty for normal images and for anomalous images without pixel labels.
    """

    image_path: Path
    label: int
    defect: str
    mask_paths: tuple[Path, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.defect}/{self.image_path.stem}"
