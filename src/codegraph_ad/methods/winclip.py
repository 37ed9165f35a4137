"""WinCLIP zero-shot scoring: embed square windows of patches, compare with state prompts.

Each window is the [CLS] token plus the window's patch tokens (with their position
embeddings) run through the frozen image tower, so its embedding describes that region
alone. A patch's score at one scale is the harmonic mean of the abnormal probabilities of the
windows that cover it (a patch is called anomalous only if every window around it agrees);
the scales are averaged.

Registered as method ``"winclip"``. Unlike the batch methods it reads images, not ViT patch
features (``input = "images"``), and scores every image alone: nothing is learned from the
batch, so ``fit_predict`` gives an image the same map whatever else is in the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from codegraph_ad.backbones.clip import ClipBundle, ClipConfig, load_clip
from codegraph_ad.backbones.registry import backbone_spec
from codegraph_ad.config import documented
from codegraph_ad.errors import ConfigError
from codegraph_ad.features.preprocess import to_model_input
from codegraph_ad.methods.base import ScoreResult
from codegraph_ad.methods.clip_text import state_embeddings, state_probability
from codegraph_ad.registry import METHODS


@dataclass(frozen=True)
class WinClipConfig:
    """WinCLIP zero-shot scoring: window sizes in patches, softmax temperature, prompt noun.

    scales: side of the square windows in patches (WinCLIP: small and mid windows, 2 and 3
        patches at ViT-B/16 240 px). Patch scores are the harmonic mean of the scores of the
        windows covering the patch, averaged over scales.
    object_name: the noun of the prompt ensemble ("a photo of a damaged {object_name}.").
    """

    scales: tuple[int, ...] = documented((2, 3), "window sides in patches (positive)")
    stride: int = documented(1, "step between windows in patches (positive)")
    # CLIP's logit scale
    temperature: float = documented(100.0, "scale of the cosine similarities before the softmax (> 0)")
    window_batch: int = documented(256, "windows per forward pass (positive)")
    object_name: str = documented("object", "noun in the prompts, e.g. 'bottle'")

    def __post_init__(self) -> None:
        scales = tuple(self.scales)
        if not scales or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in scales):
            raise ConfigError(f"WinCLIP scales must be a non-empty list of positive window sides, got {self.scales!r}")
        object.__setattr__(self, "scales", scales)
        if isinstance(self.stride, bool) or not isinstance(self.stride, int) or self.stride < 1:
            raise ConfigError(f"WinCLIP stride must be a positive int, got {self.stride!r}")
        if not self.temperature > 0:
            raise ConfigError(f"WinCLIP temperature must be > 0, got {self.temperature!r}")
        if isinstance(self.window_batch, bool) or not isinstance(self.window_batch, int) or self.window_batch < 1:
            raise ConfigError(f"WinCLIP window_batch must be a positive int, got {self.window_batch!r}")
        if not isinstance(self.object_name, str) or not self.object_name.strip():
            raise ConfigError(f"WinCLIP object_name must be a non-empty string, got {self.object_name!r}")


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


class WindowScorer:
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


_CLIP_PARAMS = {"clip_arch": "arch", "clip_checkpoint": "checkpoint", "clip_image_size": "image_size",
                "quick_gelu": "quick_gelu"}
_WINDOW_PARAMS = ("scales", "stride", "temperature", "window_batch", "object_name")
_RUN_PARAMS = ("threads", "progress")


class WinClip:
    """WinCLIP zero-shot scorer as a method: RGB images in, patch maps and image scores out.

    The CLIP (``clip_*`` and ``quick_gelu``, see ``backbones.clip.ClipConfig``) is loaded from
    the local ``clip_checkpoint`` on the first ``fit_predict`` and kept; the window and prompt
    parameters are those of ``WinClipConfig``. ``threads``: torch's CPU threads (None: leave
    them). The image score is the maximum of the map (WinCLIP's [CLS] text score is not used).
    """

    input = "images"

    def __init__(
        self,
        *,
        clip_checkpoint: str | None = ClipConfig.checkpoint,
        clip_arch: str = ClipConfig.arch,
        clip_image_size: int = ClipConfig.image_size,
        quick_gelu: bool = ClipConfig.quick_gelu,
        scales: Sequence[int] = WinClipConfig.scales,
        stride: int = WinClipConfig.stride,
        temperature: float = WinClipConfig.temperature,
        window_batch: int = WinClipConfig.window_batch,
        object_name: str = WinClipConfig.object_name,
        threads: int | None = None,
        progress: bool = False,
    ) -> None:
        self.clip_checkpoint = clip_checkpoint
        self.clip_arch = clip_arch
        self.clip_image_size = clip_image_size
        self.quick_gelu = quick_gelu
        self.scales = tuple(scales)
        self.stride = stride
        self.temperature = temperature
        self.window_batch = window_batch
        self.object_name = object_name
        self.threads = threads
        self.progress = progress
        self.window_config()  # checks the window parameters now, not at the first batch
        self._bundle: ClipBundle | None = None
        self._scorer: WindowScorer | None = None

    @classmethod
    def from_config(cls, config: Any, progress: bool = True) -> WinClip:
        """From a ``RunConfig`` whose feature backbone is a CLIP (``clip_vitb16``, ...).

        The backbone's name, image size and checkpoint choose the CLIP; the engine's threads
        the CPU threads; prompts and windows keep their defaults.
        """
        f = config.features
        spec = backbone_spec(f.backbone)
        if spec.family != "open_clip":
            raise ConfigError(f"method 'winclip' needs a CLIP backbone (features.backbone of the open_clip family, "
                              f"e.g. clip_vitb16), got {f.backbone!r}")
        return cls(clip_checkpoint=f.checkpoint, clip_arch=f.backbone, clip_image_size=f.image_size,
                   threads=config.engine.threads or None, progress=progress)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's keyword arguments, so that ``WinClip(**m.get_params())`` rebuilds ``m``."""
        return {name: getattr(self, name) for name in (*_CLIP_PARAMS, *_WINDOW_PARAMS, *_RUN_PARAMS)}

    def set_params(self, **params: Any) -> WinClip:
        """Change parameters; a changed CLIP is reloaded (and the prompts re-encoded) when next used."""
        known = self.get_params()
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ConfigError(f"WinClip has no parameter {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
        before = self.get_params()
        for name, value in params.items():
            setattr(self, name, tuple(value) if name == "scales" else value)
        try:
            self.window_config()
        except ConfigError:
            for name, value in before.items():
                setattr(self, name, value)
            raise
        if any(params[k] != before[k] for k in params if k in _CLIP_PARAMS):
            self._bundle = None
        if any(params[k] != before[k] for k in params if k not in _RUN_PARAMS):
            self._scorer = None
        return self

    def clip_config(self) -> ClipConfig:
        return ClipConfig(**{field: getattr(self, name) for name, field in _CLIP_PARAMS.items()})

    def window_config(self) -> WinClipConfig:
        return WinClipConfig(**{name: getattr(self, name) for name in _WINDOW_PARAMS})

    def scorer(self) -> WindowScorer:
        """The window scorer on the loaded CLIP, built (and the CLIP loaded) on first use."""
        if self._scorer is None:
            if self._bundle is None:
                self._bundle = load_clip(self.clip_config(), self.threads)
            b = self._bundle
            self._scorer = WindowScorer(b, state_embeddings(b.model, b.tokenizer, self.object_name),
                                        self.window_config())
        return self._scorer

    def fit_predict(self, images: Sequence[np.ndarray] | torch.Tensor) -> ScoreResult:
        """Score ``images``: RGB ``(H, W, 3)`` uint8 arrays of any size, or a ``(N, 3, S, S)``
        tensor already resized to ``clip_image_size`` and normalised with CLIP's mean and std.

        Returns ``patch_scores (N, M)`` (abnormal probabilities on the CLIP's patch grid) and
        the image scores (max of each map); nothing is fitted: each image is scored alone.
        """
        scorer = self.scorer()
        bb = scorer.bundle.backbone
        if len(images) == 0:
            raise ConfigError("WinClip.fit_predict got no images")
        if isinstance(images, torch.Tensor):
            if images.ndim != 4 or tuple(images.shape[1:]) != (3, bb.image_size, bb.image_size):
                raise ConfigError(f"WinClip expects image tensors of shape (N, 3, {bb.image_size}, {bb.image_size}), "
                                  f"got {tuple(images.shape)}")
            batch = lambda i: images[i:i + 1].float()  # noqa: E731
        else:
            batch = lambda i: to_model_input(np.asarray(images[i]), bb.image_size, bb.mean, bb.std)[None]  # noqa: E731
        rows = [scorer.score(batch(i))
                for i in tqdm(range(len(images)), desc="winclip", disable=not self.progress, leave=False)]
        patch = torch.cat(rows).float()
        raw = patch.max(dim=1).values.double().numpy()
        return ScoreResult(patch_scores=patch, image_scores=raw.copy(), raw_image_scores=raw, grid=scorer.grid,
                           diagnostics={"method": "winclip", "clip_arch": self.clip_arch,
                                        "object_name": self.object_name, "scales": list(self.scales)})


METHODS.register("winclip", WinClip)
