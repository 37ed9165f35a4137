"""Read NIfTI volumes in canonical (RAS+) orientation and write maps back in the input's grid.

Every failure names the file: a header nibabel cannot parse, a non-3D image, a degenerate
affine, NaN/inf voxels or an all-zero volume stop the run before any feature is computed.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from codegraph_ad.errors import InputError
from codegraph_ad.io.atomic import atomic_write

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in NIFTI_SUFFIXES) and not name.startswith(".")


def nifti_stem(path: Path) -> str:
    """File name without ``.nii`` / ``.nii.gz``."""
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def discover_volumes(root: Path) -> list[Path]:
    """Every NIfTI file under ``root`` (recursive), sorted for a reproducible order."""
    root = Path(root)
    if root.is_file():
        return [root] if is_nifti(root) else []
    if not root.is_dir():
        raise InputError(f"{root}: no such file or folder")
    return sorted(p for p in root.rglob("*") if p.is_file() and is_nifti(p))


@dataclass(frozen=True)
class VolumeGeometry:
    """What is needed to write a result in a file's own grid.

    affine: the file's original affine; shape: the file's original 3D shape.
    ornt: the orientation transform from the file's axes to canonical ones (nibabel ornt).
    zooms: voxel size in mm along the canonical (RAS+) axes.
    """

    path: Path
    affine: np.ndarray
    shape: tuple[int, int, int]
    ornt: np.ndarray
    zooms: tuple[float, float, float]

    @property
    def canonical_shape(self) -> tuple[int, int, int]:
        order = np.argsort(self.ornt[:, 0])
        return tuple(int(self.shape[int(i)]) for i in order)  # type: ignore[return-value]


@dataclass
class NiftiVolume:
    """data: ``(X, Y, Z)`` float32 voxels in canonical (RAS+) axis order; geometry: the file's grid."""

    data: np.ndarray
    geometry: VolumeGeometry

    @property
    def path(self) -> Path:
        return self.geometry.path


def _load_image(path: Path) -> nib.Nifti1Image | nib.Nifti2Image:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for bad headers and truncated gzip
        raise InputError(f"{path}: not a readable NIfTI file ({type(exc).__name__}: {exc})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{path}: expected a NIfTI image, nibabel read a {type(img).__name__}")
    return img


def _checked_affine(path: Path, img: nib.Nifti1Image) -> np.ndarray:
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(f"{path}: the header's affine is degenerate or not finite:\n{affine}")
    return affine


def read_nifti_array(path: str | Path, what: str = "volume") -> tuple[np.ndarray, nib.Nifti1Image]:
    """Voxel data (float32, squeezed to 3D) and the image, with every check applied."""
    path = Path(path)
    img = _load_image(path)
    shape = tuple(int(s) for s in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3 or min(shape) < 2:
        raise InputError(f"{path}: a 3D {what} is needed, the header says shape {tuple(img.shape)}")
    _checked_affine(path, img)
    try:
        data = np.asarray(img.get_fdata(dtype=np.float32)).reshape(shape)
    except Exception as exc:
        raise InputError(f"{path}: voxel data cannot be read ({type(exc).__name__}: {exc})") from None
    bad = ~np.isfinite(data)
    if bad.any():
        raise InputError(
            f"{path}: {int(bad.sum())} of {data.size} voxels are NaN or infinite; fix or mask the file"
        )
    return data, img


def load_nifti(path: str | Path) -> NiftiVolume:
    """Read ``path`` and reorder its axes to RAS+ (a permutation/flip: no interpolation)."""
    path = Path(path)
    data, img = read_nifti_array(path)
    if not np.any(data):
        raise InputError(f"{path}: every voxel is 0; nothing to analyse")
    affine = _checked_affine(path, img)
    ornt = nib.orientations.io_orientation(affine)
    canonical = nib.orientations.apply_orientation(data, ornt)
    zooms_file = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    zooms = tuple(float(zooms_file[int(ax)]) for ax in np.argsort(ornt[:, 0]))
    geometry = VolumeGeometry(path, affine, tuple(int(s) for s in data.shape), ornt, zooms)  # type: ignore[arg-type]
    return NiftiVolume(np.ascontiguousarray(canonical, dtype=np.float32), geometry)


def load_mask_like(path: str | Path, geometry: VolumeGeometry) -> np.ndarray:
    """A mask file (nonzero = inside) on the same grid as ``geometry``, in canonical order."""
    path = Path(path)
    data, img = read_nifti_array(path, "mask")
    if tuple(data.shape) != geometry.shape:
        raise InputError(f"{path}: mask shape {data.shape} differs from {geometry.path} shape {geometry.shape}")
    if not np.allclose(img.affine, geometry.affine, atol=1e-3):
        raise InputError(f"{path}: mask affine differs from the affine of {geometry.path}")
    return np.ascontiguousarray(nib.orientations.apply_orientation(data != 0, geometry.ornt))


def to_file_orientation(canonical: np.ndarray, geometry: VolumeGeometry) -> np.ndarray:
    """Undo the axis reordering of ``load_nifti``: canonical array -> the file's own grid."""
    inverse = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(("R", "A", "S")), geometry.ornt)
    out = nib.orientations.apply_orientation(canonical, inverse)
    if tuple(out.shape) != geometry.shape:
        raise AssertionError(f"reorientation produced {out.shape}, expected {geometry.shape}")
    return np.ascontiguousarray(out)


def write_nifti(path: str | Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """Write ``data`` with ``affine`` atomically; ``.nii.gz`` names are gzip-compressed."""
    path = Path(path)
    img = nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=np.float64))
    img.header.set_xyzt_units("mm")
    raw = img.to_bytes()
    if path.name.lower().endswith(".gz"):
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as gz:
            gz.write(raw)
        raw = buf.getvalue()
    return atomic_write(path, lambda fh: fh.write(raw))


def write_like(path: str | Path, canonical: np.ndarray, geometry: VolumeGeometry) -> Path:
    """Write a canonical-order array in the grid and affine of ``geometry``'s file."""
    return write_nifti(path, to_file_orientation(canonical, geometry), geometry.affine)
