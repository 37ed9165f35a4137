"""Tiny synthetic volumes and a fast stand-in backbone for the volume tests."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from codegraph_ad.backbones.base import BackboneOutput


class FakeBackbone:
    """Deterministic patch features (mean, spread and gradients of each 14 x 14 patch, mixed
    by fixed random matrices): fast, and sensitive to local intensity like a real ViT."""

    name = "fake"
    patch_size = 14
    mean = (0.5, 0.5, 0.5)
    std = (0.25, 0.25, 0.25)

    def __init__(self, image_size: int, n_layers: int = 2, dim: int = 16, seed: int = 0) -> None:
        self.image_size = image_size
        g = torch.Generator().manual_seed(seed)
        self.mix = [torch.randn(5, dim, generator=g) for _ in range(n_layers)]
        self.calls = 0

    def extract(self, images: torch.Tensor) -> BackboneOutput:
        self.calls += 1
        x = images[:, :1]
        p = self.patch_size
        dx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1))
        dy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
        stats = [F.avg_pool2d(t, p) for t in (x, x * x, dx.abs(), dy.abs(), dx * dy)]
        feats = torch.cat(stats, dim=1).flatten(2).transpose(1, 2)  # (B, M, 5)
        layers = [torch.tanh(feats @ w) for w in self.mix]
        h = self.image_size // p
        return BackboneOutput(layers, layers[-1].mean(dim=1), (h, h))


def brain_volume(shape=(30, 34, 28), seed: int = 0, lesion: tuple[float, float, float] | None = None,
                 lesion_radius: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """An ellipsoidal "brain" with smooth folds, zero background; optional bright blob.

    Returns (volume float32, lesion mask bool).
    """
    rng = np.random.default_rng(seed)
    axes = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    r = np.sqrt((axes ** 2).sum(0))
    brain = r < 0.95
    folds = 100 + 25 * np.sin(7 * axes[0] + 1.5 * axes[1]) * np.cos(5 * axes[2])
    vol = np.where(brain, folds + rng.normal(0, 1.5, shape), 0.0).astype(np.float32)
    mask = np.zeros(shape, dtype=bool)
    if lesion is not None:
        mask = (np.sqrt(((axes - np.asarray(lesion)[:, None, None, None]) ** 2).sum(0)) < lesion_radius) & brain
        vol[mask] *= 1.8
    return vol, mask


def save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def lps_affine(zooms=(1.2, 1.0, 1.5)) -> np.ndarray:
    """An LPS-oriented affine (as BraTS files have), so reorientation is exercised."""
    a = np.diag([-zooms[0], -zooms[1], zooms[2], 1.0])
    a[:3, 3] = (12.0, 20.0, -8.0)
    return a
