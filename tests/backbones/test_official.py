"""Official-weight loaders, tested offline: random models of each family are saved in the
official file formats, then loaded back through the project's loaders from the path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from codegraph_ad.backbones import backbone_spec, create_backbone
from codegraph_ad.backbones._optional import import_open_clip, import_timm
from codegraph_ad.backbones.base import CLIP_MEAN, IMAGENET_MEAN, BackboneOutput
from codegraph_ad.backbones.official import OpenClipBackbone, TimmViTBackbone

timm = import_timm()
open_clip = import_open_clip()

TINY_VIT = {"embed_dim": 32, "num_heads": 2}
TINY_CLIP = {
    "embed_dim": 16,
    "text_cfg": {"context_length": 77, "vocab_size": 500, "width": 32, "heads": 2, "layers": 1},
}


def images(size: int, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


def check_output(out: BackboneOutput, n_layers: int, grid: int, width: int, cls_width: int) -> None:
    assert out.grid == (grid, grid)
    assert len(out.layers) == n_layers
    for tokens in out.layers:
        assert tokens.shape == (1, grid * grid, width) and torch.isfinite(tokens).all()
    assert out.cls.shape == (1, cls_width) and torch.isfinite(out.cls).all()


def assert_weights_equal(model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    loaded = model.state_dict()
    for key, value in saved.items():
        assert torch.equal(loaded[key], value), key


def test_dinov2_vits14_real_size_from_official_pth(tmp_path: Path) -> None:
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    official = {**saved, "mask_token": torch.zeros(1, 384)}  # the official .pth key set
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(official, path)
    backbone = create_backbone("dinov2_vits14", 224, checkpoint=str(path))
    assert backbone.mean == IMAGENET_MEAN and backbone.patch_size == 14
    assert backbone.layers == (3, 6, 9, 12)
    check_output(backbone.extract(images(224)), 4, 16, 384, 384)
    assert_weights_equal(backbone.model, saved)  # pos_embed kept at 37x37, resized per call


def test_clip_vitb16_real_size_from_openai_state_dict(tmp_path: Path) -> None:
    model = open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    openai = {
        **saved,
        "input_resolution": torch.tensor(224),
        "context_length": torch.tensor(77),
        "vocab_size": torch.tensor(49408),
    }
    path = tmp_path / "ViT-B-16.pt"
    torch.save(openai, path)
    backbone = create_backbone("clip_vitb16", 224, checkpoint=str(path))
    assert backbone.mean == CLIP_MEAN and backbone.layers == (3, 6, 9, 12)
    check_output(backbone.extract(images(224)), 4, 14, 768, 512)
    assert_weights_equal(backbone.model, saved)


@pytest.mark.parametrize(
    ("name", "fmt", "size"),
    [
        ("dinov2_vitb14", "timm_safetensors", 126),
        ("dinov2_vitl14", "official_pth", 98),
        ("dino_vitb8", "dino_full_checkpoint", 64),
        ("dino_vitb16", "official_pth", 96),
    ],
)
def test_timm_families_small(tmp_path: Path, name: str, fmt: str, size: int) -> None:
    spec = backbone_spec(name)
    arch = spec.arch.split(".")[0]
    model = timm.create_model(arch, pretrained=False, num_classes=0, **TINY_VIT)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    if fmt == "timm_safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "model.safetensors"
        save_file(saved, str(path))
    elif fmt == "official_pth":
        path = tmp_path / "official.pth"
        extra = {"mask_token": torch.zeros(1, 32)} if name.startswith("dinov2") else {}
        torch.save({**saved, **extra}, path)
    else:  # DINO's full training checkpoint: teacher weights under module.backbone.*, plus a head
        path = tmp_path / "checkpoint.pth"
        teacher = {f"module.backbone.{k}": v for k, v in saved.items()}
        teacher["module.head.last_layer.weight"] = torch.zeros(3, 32)
        torch.save({"teacher": teacher, "epoch": 100}, path)
    backbone = TimmViTBackbone(
        name,
        arch,
        size,
        spec.default_layers,
        spec.mean,
        spec.std,
        checkpoint=str(path),
        model_kwargs=TINY_VIT,
    )
    assert backbone.patch_size == spec.patch_size and len(backbone.model.blocks) == spec.depth
    out = backbone.extract(images(size))
    check_output(out, 4, size // spec.patch_size, 32, 32)
    assert_weights_equal(backbone.model, saved)


def test_timm_final_norm_and_layer_order(tmp_path: Path) -> None:
    model = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0, depth=4, **TINY_VIT)
    path = tmp_path / "m.pth"
    torch.save(model.state_dict(), path)
    kw = {"checkpoint": str(path), "model_kwargs": {"depth": 4, **TINY_VIT}}
    raw = TimmViTBackbone("t", "vit_base_patch16_224", 64, (4, 2), IMAGENET_MEAN, IMAGENET_MEAN, **kw)
    normed = TimmViTBackbone(
        "t", "vit_base_patch16_224", 64, (4, 2), IMAGENET_MEAN, IMAGENET_MEAN, final_norm=True, **kw
    )
    x = images(64)
    a, b = raw.extract(x), normed.extract(x)
    with torch.inference_mode():
        ref = raw.model.forward_features(x)  # final norm of all tokens after block 4
    torch.testing.assert_close(b.layers[0], ref[:, 1:])
    torch.testing.assert_close(a.cls, ref[:, 0])
    torch.testing.assert_close(b.layers[1], raw.model.norm(a.layers[1]))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_clip_l14_336_small_from_torchscript_archive(tmp_path: Path) -> None:
    spec = backbone_spec("clip_vitl14_336")
    kwargs = {
        **TINY_CLIP,
        "vision_cfg": {"image_size": 336, "layers": 24, "width": 32, "head_width": 16, "patch_size": 14},
    }
    model = open_clip.create_model("ViT-L-14-336", pretrained=None, force_quick_gelu=True, **kwargs)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "ViT-L-14-336px.pt"
    torch.jit.script(model).save(str(path))  # OpenAI releases are TorchScript archives
    backbone = OpenClipBackbone(
        "clip_vitl14_336",
        "ViT-L-14-336",
        224,
        spec.default_layers,
        spec.mean,
        spec.std,
        checkpoint=str(path),
        model_kwargs=kwargs,
    )
    assert backbone.layers == (6, 12, 18, 24)
    out = backbone.extract(images(224))  # 24x24 position grid resized to 16x16
    check_output(out, 4, 16, 32, 16)
    assert_weights_equal(backbone.model, saved)
    native = OpenClipBackbone(
        "clip_vitl14_336",
        "ViT-L-14-336",
        336,
        (6, 24),
        spec.mean,
        spec.std,
        checkpoint=str(path),
        final_norm=True,
        model_kwargs=kwargs,
    )
    x = images(336)
    visual = native.model.visual
    visual.output_tokens = True
    with torch.inference_mode():  # at the native size: open_clip's own ln_post tokens and embedding
        pooled, tokens = visual(x)
    out = native.extract(x)
    torch.testing.assert_close(out.layers[1], tokens, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.cls, pooled, atol=1e-5, rtol=1e-5)


def test_wrong_or_missing_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="checkpoint"):
        create_backbone("dino_vitb16", 224)  # no path and not online: no download
    with pytest.raises(ValueError, match="does not exist"):
        create_backbone("clip_vitb16", 224, checkpoint=str(tmp_path / "nope.pt"))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"garbage\.pt"):
        create_backbone("dino_vitb16", 224, checkpoint=str(garbage))
    shallow = tmp_path / "shallow.pth"
    kwargs = {"depth": 1, **TINY_VIT}
    torch.save(
        timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0, **kwargs).state_dict(),
        shallow,
    )
    with pytest.raises(ValueError, match="not a CLIP ViT"):  # found before any model is built
        create_backbone("clip_vitb16", 224, checkpoint=str(shallow))
    with pytest.raises(ValueError, match="does not fit"):  # a 1-block file for a 2-block model
        TimmViTBackbone(
            "t",
            "vit_base_patch16_224",
            64,
            (1,),
            IMAGENET_MEAN,
            IMAGENET_MEAN,
            checkpoint=str(shallow),
            model_kwargs={**kwargs, "depth": 2},
        )


def test_torchvision_stand_in_ops_only_when_needed() -> None:
    from codegraph_ad.backbones import _optional

    torchvision = _optional.ensure_torchvision()
    if not _optional.patched_torchvision:
        pytest.skip("torchvision's own compiled ops loaded; nothing was declared")
    assert not torchvision.extension._has_ops()
    with pytest.raises(RuntimeError, match="declared this op only"):
        torch.ops.torchvision.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
