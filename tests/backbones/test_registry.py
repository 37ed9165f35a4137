"""create_backbone: the names it knows and the errors it gives before building anything."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from codegraph_ad.backbones import Backbone, BackboneOutput, backbone_spec, create_backbone, list_backbones
from codegraph_ad.backbones.base import CLIP_MEAN, IMAGENET_MEAN
from codegraph_ad.errors import InputError


def test_known_backbones() -> None:
    names = list_backbones()
    assert names[0] == "dinov2_vits14_imgfocus"
    for required in (
        "dinov2_vits14",
        "dinov2_vitb14",
        "dinov2_vitl14",
        "dino_vitb8",
        "dino_vitb16",
        "clip_vitb16",
        "clip_vitl14",
        "clip_vitl14_336",
    ):
        assert required in names
    for spec in map(backbone_spec, names):
        assert len(spec.default_layers) == 4 and spec.default_layers[-1] == spec.depth
        assert spec.mean == (CLIP_MEAN if spec.family == "open_clip" else IMAGENET_MEAN)
    assert backbone_spec("dinov2_vitl14").default_layers == (6, 12, 18, 24)
    assert backbone_spec("clip_vitl14_336").default_layers == (6, 12, 18, 24)
    assert backbone_spec("dino_vitb8").patch_size == 8 and backbone_spec("clip_vitb16").patch_size == 16


def test_default_backbone_runs_offline() -> None:
    backbone: Backbone = create_backbone("dinov2_vits14_imgfocus", 224, threads=1)
    assert (backbone.patch_size, backbone.image_size, backbone.mean) == (14, 224, IMAGENET_MEAN)
    out = backbone.extract(torch.zeros(1, 3, 224, 224))
    assert isinstance(out, BackboneOutput) and out.grid == (16, 16)
    assert [t.shape for t in out.layers] == [(1, 256, 384)] * 4 and out.cls.shape == (1, 384)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"name": "dinov3_vits16"},
            "unknown backbone 'dinov3_vits16'; known backbones: dinov2_vits14_imgfocus",
        ),
        ({"image_size": 230}, "image_size=230 is not a multiple of the patch size 14"),
        ({"name": "dino_vitb16", "image_size": 518}, "not a multiple of the patch size 16"),
        ({"layers": (3, 13)}, "layer index 13 is out of range"),
        ({"layers": (0,)}, "layer index 0 is out of range"),
        ({"layers": ()}, "at least one block"),
        ({"threads": 0}, "threads must be None or a positive int, got 0"),
        ({"checkpoint": "x.pt"}, "takes no checkpoint"),
        ({"name": "dinov2_vitl14", "layers": (25,)}, "blocks are numbered 1..24"),
        ({"name": "clip_vitl14", "checkpoint": "/no/such/file.pt"}, "'/no/such/file.pt'.*does not exist"),
        ({"name": "clip_vitb16", "image_size": 224}, "needs checkpoint="),
    ],
)
def test_errors_name_the_value(kwargs: dict, message: str) -> None:
    args = {"name": "dinov2_vits14_imgfocus", "image_size": 448, **kwargs}
    with pytest.raises(ValueError, match=message) as info:
        create_backbone(**args)
    assert isinstance(info.value, InputError)  # the CLI prints these as one line


def test_unreadable_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    with pytest.raises(ValueError, match="not a file"):
        create_backbone("dino_vitb8", 224, checkpoint=str(folder))
