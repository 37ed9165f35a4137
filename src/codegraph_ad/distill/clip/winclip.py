"""WinCLIP zero-shot scoring: embed square windows of patches, compare with state prompts.

Each window is the [CLS] token plus the window's patch tokens (with their position
embeddings) run through the frozen image tower, so its embedding describes that region
alone. A patch's score at one scale is the harmonic mean of the abnormal probabilities of the
windows that cover it (a patch is called anomalous only if every window around it agrees);
the scales are averaged.
"""

from __future__ import annotations

import torch

from codegraph_ad.distill.clip.model import ClipBundle
from codegraph_ad.distill.clip.text import state_probability
from codegraph_ad.distill.config import WinClipConfig


def window_index(grid: tuple[int, int], size: int, stride: int = 1) -> torch.Tensor:
    """``(W, size * size)`` row-major patch indices of every ``size x size`` window on ``grid``."""
    h, w = grid
    if not 1 <= size <= min(h, w):
        raise ValueError(f"window size {size} does not fit the {h}x{w} patch grid")
    if stride < 1:
        raise ValueError(f"window stride must be >= 1, got {stride}")
    ys = torch.arange(0, h - size + 1, stride)
    xs = torch.arange(0, w - size + 1, stride)
    dy, dx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    top = (ys[:, None] * w + xs[None, :]).reshape(-1)
    return top[:, None] + (dy * w + dx).reshape(1, -1)


def harmonic_patch_scores(window_scores: torch.Tensor, index: torch.Tensor, n_patches: int) -> torch.Tensor:
    """``(B, W)`` window scores -> ``(B, M)`` harmonic mean over the windows covering each patch."""
    member = torch.zeros(index.shape[0], n_patches, dtype=window_scores.dtype)
    member.scatter_(1, index, 1.0)
    inv = (1.0 / window_scores.clamp_min(1e-6)) @ member
    count = member.sum(dim=0).clamp_min(1.0)
    return count / inv


class WinClip:
    """Zero-shot window scorer on a loaded CLIP; ``text: (2, D)`` normal/abnormal embeddings."""

    def __init__(self, bundle: ClipBundle, text: torch.Tensor, config: WinClipConfig = WinClipConfig()) -> None:
        self.bundle = bundle
        self.text = text
        self.config = config
        g = bundle.backbone.image_size // bundle.backbone.patch_size
        self.grid = (g, g)
        self.index = {s: window_index(self.grid, s, config.stride) for s in config.scales}

    def _embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch embeddings (+ position) ``(B, M, C)`` and the [CLS] token ``(1, 1, C)``."""
        v = self.bundle.model.visual
        pos = self.bundle.backbone._pos.to(images.dtype)  # resized position embedding (1, 1+M, C)
        x = v.conv1(images)
        b, c = x.shape[:2]
        x = x.reshape(b, c, -1).permute(0, 2, 1) + pos[:, 1:]
        cls = v.class_embedding.reshape(1, 1, c) + pos[:, :1]
        return x, cls

    def _window_embeddings(self, patches: torch.Tensor, cls: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        v = self.bundle.model.visual
        b, _, c = patches.shape
        seqs = patches[:, index].reshape(b * index.shape[0], index.shape[1], c)
        out = []
        for start in range(0, seqs.shape[0], self.config.window_batch):
            chunk = seqs[start:start + self.config.window_batch]
            x = torch.cat([cls.expand(chunk.shape[0], 1, c), chunk], dim=1)
            x = v.transformer(v.ln_pre(x))
            out.append(v.ln_post(x[:, 0]) @ v.proj)
        return torch.cat(out).reshape(b, index.shape[0], -1)

    def score(self, images: torch.Tensor) -> torch.Tensor:
        """``images: (B, 3, S, S)`` normalised -> ``(B, M)`` abnormal probability per patch."""
        m = self.grid[0] * self.grid[1]
        with torch.inference_mode():
            patches, cls = self._embed(images)
            per_scale = []
            for index in self.index.values():
                emb = self._window_embeddings(patches, cls, index)
                probs = state_probability(emb, self.text, self.config.temperature)
                per_scale.append(harmonic_patch_scores(probs, index, m))
            return torch.stack(per_scale).mean(dim=0)
