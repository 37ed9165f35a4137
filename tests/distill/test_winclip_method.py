"""WinCLIP as the registered method "winclip", on a randomly initialised tiny CLIP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from codegraph_ad.config import FeatureConfig, RunConfig
from codegraph_ad.errors import ConfigError
from codegraph_ad.registry import METHODS

from .conftest import TINY_ARCH, toy_image

try:  # through the torchvision workaround, never a bare `import open_clip`
    from codegraph_ad.backbones._optional import import_open_clip

    import_open_clip()
except ImportError as exc:  # pragma: no cover - depends on the optional extras
    pytest.skip(f"open_clip not installed: {exc}", allow_module_level=True)

from codegraph_ad.methods.winclip import WinClip, WinClipConfig  # noqa: E402


def test_registered_as_an_image_method() -> None:
    assert METHODS.get("winclip") is WinClip and "winclip" in METHODS.names()
    assert WinClip.input == "images"
    defaults = WinClip().get_params()
    assert defaults["scales"] == WinClipConfig.scales and defaults["object_name"] == "object"
    assert defaults["clip_arch"] == "ViT-L-14-336" and defaults["clip_checkpoint"] is None


def _method(checkpoint: Path, **params) -> WinClip:
    return WinClip(clip_checkpoint=str(checkpoint), clip_arch=TINY_ARCH, clip_image_size=64, window_batch=64,
                   **params)


def test_fit_predict_matches_the_per_image_detector(tiny_clip_checkpoint: Path) -> None:
    from codegraph_ad.distill.clip.detector import WinClipDetector

    rng = np.random.default_rng(0)
    images = [toy_image(rng, None)[0], toy_image(rng, None)[0], toy_image(rng, (20, 20, 16))[0]]
    method = _method(tiny_clip_checkpoint, object_name="bottle")
    result = method.fit_predict(images)
    assert result.grid == (8, 8) and result.patch_scores.shape == (3, 64)
    assert result.patch_scores.dtype == torch.float32
    assert 0.0 <= float(result.patch_scores.min()) <= float(result.patch_scores.max()) <= 1.0
    np.testing.assert_allclose(result.image_scores, result.patch_scores.max(dim=1).values.double().numpy())
    # each image is scored alone: the same map as the one-image detector, whatever the batch
    det = WinClipDetector(method.scorer().bundle, "bottle", method.window_config())
    torch.testing.assert_close(det.predict(images[2]).probs.reshape(-1), result.patch_scores[2])
    torch.testing.assert_close(method.fit_predict(images[2:]).patch_scores[0], result.patch_scores[2])
    # a preprocessed tensor gives the same scores as the RGB arrays
    from codegraph_ad.features.preprocess import to_model_input

    bb = method.scorer().bundle.backbone
    x = torch.stack([to_model_input(im, 64, bb.mean, bb.std) for im in images])
    torch.testing.assert_close(method.fit_predict(x).patch_scores, result.patch_scores)
    with pytest.raises(ConfigError, match=r"shape \(N, 3, 64, 64\)"):
        method.fit_predict(torch.zeros(1, 3, 32, 32))


def test_set_params_rebuilds_only_what_changed(tiny_clip_checkpoint: Path) -> None:
    rng = np.random.default_rng(1)
    images = [toy_image(rng, None)[0] for _ in range(2)]
    method = _method(tiny_clip_checkpoint)
    before = method.fit_predict(images).patch_scores
    bundle = method.scorer().bundle
    assert method.set_params(scales=[2], object_name="cable") is method
    assert method.get_params()["scales"] == (2,) and method.scorer().bundle is bundle  # same CLIP, new text
    after = method.fit_predict(images).patch_scores
    assert not torch.allclose(before, after)
    again = WinClip(**method.get_params())
    torch.testing.assert_close(again.fit_predict(images).patch_scores, after)
    with pytest.raises(ConfigError, match="no parameter 'window'"):
        method.set_params(window=3)
    with pytest.raises(ConfigError, match="stride must be a positive int, got 0"):
        method.set_params(stride=0)
    assert method.stride == 1  # a refused change leaves the method as it was


def test_from_config_needs_a_clip_backbone() -> None:
    config = RunConfig(features=FeatureConfig(backbone="clip_vitb16", image_size=224, checkpoint="ViT-B-16.pt"))
    method = WinClip.from_config(config)
    assert (method.clip_arch, method.clip_image_size, method.clip_checkpoint) == ("clip_vitb16", 224, "ViT-B-16.pt")
    with pytest.raises(ConfigError, match="needs a CLIP backbone.*got 'dinov2_vits14_imgfocus'"):
        WinClip.from_config(RunConfig())
    with pytest.raises(ConfigError, match="scales must be a non-empty list"):
        WinClip(scales=())
