"""A user's own ViT, registered from their code, runs through ``detect`` like a built-in one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codegraph_ad.api import detect
from codegraph_ad.backbones import (
    BackboneConfigError,
    BackboneOutput,
    backbone_spec,
    create_backbone,
    list_backbones,
    register_backbone,
)
from codegraph_ad.config import FeatureConfig, RunConfig
from codegraph_ad.errors import ConfigError
from codegraph_ad.registry import BACKBONES

PATCH, DEPTH, WIDTH = 8, 3, 16


class TinyViT(torch.nn.Module):
    """Random-init patch embedding + transformer blocks: the ``Backbone`` protocol, nothing more."""

    name = "my_vit"
    patch_size = PATCH
    mean = (0.5, 0.5, 0.5)
    std = (0.25, 0.25, 0.25)

    def __init__(self, *, image_size: int, layers: tuple[int, ...], final_norm: bool, checkpoint: str | None,
                 threads: int | None, online: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.image_size, self.layers = image_size, layers
        self.embed = torch.nn.Conv2d(3, WIDTH, PATCH, stride=PATCH)
        self.cls_token = torch.nn.Parameter(torch.randn(1, 1, WIDTH))
        self.blocks = torch.nn.ModuleList(
            torch.nn.TransformerEncoderLayer(WIDTH, 2, 32, dropout=0.0, batch_first=True) for _ in range(DEPTH)
        )
        self.eval()

    @torch.no_grad()
    def extract(self, images: torch.Tensor) -> BackboneOutput:
        x = self.embed(images)
        grid = (x.shape[2], x.shape[3])
        x = torch.cat([self.cls_token.expand(len(x), 1, WIDTH), x.flatten(2).transpose(1, 2)], dim=1)
        taken = []
        for i, block in enumerate(self.blocks, start=1):
            x = block(x)
            if i in self.layers:
                taken.append(x[:, 1:].contiguous())
        return BackboneOutput(layers=taken, cls=x[:, 0], grid=grid)


@pytest.fixture
def my_vit() -> Iterator[str]:
    register_backbone("my_vit", TinyViT, patch_size=PATCH, depth=DEPTH, mean=TinyViT.mean, std=TinyViT.std,
                      description="a test's own ViT")
    yield "my_vit"
    BACKBONES.unregister("my_vit")


def _images(folder: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(n):
        rgb = np.clip(rng.normal(120, 10, (48, 48, 3)), 0, 255).astype(np.uint8)
        if i == n - 1:
            rgb[16:32, 16:32] = (240, 20, 20)
        Image.fromarray(rgb).save(folder / f"{i}.png")
    return folder


def test_registered_backbone_runs_detect_end_to_end(my_vit: str, tmp_path: Path) -> None:
    assert list_backbones()[0] == "dinov2_vits14_imgfocus" and list_backbones()[-1] == my_vit
    spec = backbone_spec(my_vit)
    assert (spec.patch_size, spec.depth, spec.default_layers, spec.family) == (PATCH, DEPTH, (1, 2, 3), "custom")
    config = RunConfig(method="musc", features=FeatureConfig(backbone=my_vit, image_size=32, layers=(2, 3)))
    result = detect(_images(tmp_path / "images"), tmp_path / "run", config, progress=False, overlays=False,
                    cache=False)
    assert len(result.names) == 4 and result.scores.grid == (4, 4)
    assert result.scores.patch_scores.shape == (4, 16)
    assert np.isfinite(result.scores.image_scores).all()
    assert (tmp_path / "run" / "run.json").is_file()
    # the manifest says which code built the weights, and analyze refuses once it is unregistered
    from codegraph_ad.analysis.run import check_backbone
    from codegraph_ad.errors import InputError
    from codegraph_ad.io.run_folder import BackboneIdentity, read_run_folder

    run = read_run_folder(tmp_path / "run")
    assert run.backbone == BackboneIdentity("my_vit", "registered", model=f"{__name__}.TinyViT")
    check_backbone(run, None)
    BACKBONES.unregister(my_vit)
    try:
        with pytest.raises(InputError, match="registered backbone 'my_vit'.*CODEGRAPH_AD_PLUGINS"):
            check_backbone(run, None)
    finally:
        register_backbone("my_vit", TinyViT, patch_size=PATCH, depth=DEPTH, mean=TinyViT.mean, std=TinyViT.std)


def test_checks_use_the_registered_spec(my_vit: str) -> None:
    with pytest.raises(BackboneConfigError, match="not a multiple of the patch size 8"):
        create_backbone(my_vit, 36)
    with pytest.raises(BackboneConfigError, match="blocks are numbered 1..3"):
        create_backbone(my_vit, 32, layers=(4,))
    assert create_backbone(my_vit, 32).layers == (1, 2, 3)
    with pytest.raises(ConfigError, match="already registered"):
        register_backbone(my_vit, TinyViT, patch_size=PATCH, depth=DEPTH)


def test_decorator_form_and_a_factory_that_lies() -> None:
    @register_backbone("liar_vit", patch_size=16, depth=3)
    def liar(**kwargs) -> TinyViT:  # builds patch-8 tokens under a patch-16 name
        return TinyViT(**kwargs)

    try:
        assert liar.__name__ == "liar"  # the decorator returns the factory unchanged
        with pytest.raises(BackboneConfigError, match=r"returned TinyViT with \(patch_size, image_size\) = \(8, 32\)"):
            create_backbone("liar_vit", 32)
    finally:
        BACKBONES.unregister("liar_vit")
    assert "liar_vit" not in list_backbones()


def test_bad_registrations_and_unregistered_names_are_clear_errors() -> None:
    with pytest.raises(BackboneConfigError, match="patch_size of backbone 'x' must be a positive int, got 0"):
        register_backbone("x", TinyViT, patch_size=0, depth=3)
    with pytest.raises(BackboneConfigError, match="layer index 5 is out of range"):
        register_backbone("x", TinyViT, patch_size=8, depth=3, default_layers=(5,))
    with pytest.raises(BackboneConfigError, match="std of backbone 'x' must be three positive floats"):
        register_backbone("x", TinyViT, patch_size=8, depth=3, std=(1.0, 0.0, 1.0))
    assert "x" not in list_backbones()
    with pytest.raises(ConfigError, match=r"backbone must be a registered backbone \(dinov2_vits14_imgfocus, .*got 'x'"):
        FeatureConfig(backbone="x")
