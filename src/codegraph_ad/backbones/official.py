"""Official DINO / DINOv2 (timm) and CLIP (open_clip) ViTs loaded from a local checkpoint.

Nothing is downloaded unless ``online=True`` is passed: the models are built with random
weights (``pretrained=False`` / ``pretrained=None``) and the user's file is loaded strictly, so
a wrong file fails loudly instead of running with half its weights. Tokens are the raw residual
stream after each requested block (optionally through the model's final norm); the position
embedding is resized for any image side that is a multiple of the patch size.
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from codegraph_ad.backbones._checks import (
    BackboneConfigError,
    check_checkpoint,
    check_image_size,
    check_images,
    check_layers,
)
from codegraph_ad.backbones._optional import import_open_clip, import_timm
from codegraph_ad.backbones.base import BackboneOutput

StateDict = dict[str, torch.Tensor]
_CLIP_META_KEYS = ("input_resolution", "context_length", "vocab_size")


def _strip_prefix(sd: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix) :]: v for k, v in sd.items()}
    return dict(sd)


def read_state_dict(path: str) -> StateDict:
    """Tensors of a checkpoint file: safetensors, a ``torch.save`` dict, or a TorchScript archive.

    Unwraps the usual containers (``state_dict``, ``model``, DINO's ``teacher``) and the
    ``module.`` / ``backbone.`` prefixes of distributed and self-distillation training.
    """
    try:
        obj = _read_file(path)
    except Exception as exc:
        raise BackboneConfigError(f"checkpoint {path!r} cannot be read as weights: {exc}") from exc
    for key in ("teacher", "state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if isinstance(obj, Mapping):
        obj = {k: v for k, v in obj.items() if k not in _CLIP_META_KEYS}
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BackboneConfigError(f"checkpoint {path!r} holds no tensor state dict")
    sd = _strip_prefix(obj, "module.")
    if any(k.startswith("backbone.") for k in sd):  # DINO full checkpoints: backbone.* + head.*
        sd = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
    return sd


def _read_file(path: str) -> object:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            is_jit = any(n.endswith("constants.pkl") for n in zf.namelist())
        if is_jit:  # OpenAI CLIP releases are TorchScript archives
            with warnings.catch_warnings():  # torch.jit.load is deprecated, the files are not
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(path, map_location="cpu").state_dict()
    return torch.load(path, map_location="cpu", weights_only=True)


def _load_strict(model: torch.nn.Module, sd: StateDict, path: str, name: str) -> None:
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[:4]
        raise BackboneConfigError(
            f"checkpoint {path!r} does not fit {name!r}: " + " ".join(line.strip() for line in first)
        ) from exc


def _order(layers: tuple[int, ...], taken: dict[int, torch.Tensor]) -> list[torch.Tensor]:
    return [taken[i] for i in layers]


def read_vit_state_dict(path: str, name: str) -> StateDict:
    """A timm / DINO / DINOv2 ViT state dict, without classifier heads (unused here)."""
    sd = {k: v for k, v in read_state_dict(path).items() if not k.startswith("head.")}
    if "patch_embed.proj.weight" not in sd:
        raise BackboneConfigError(
            f"checkpoint {path!r} is not a ViT state dict for {name!r} "
            f"(no 'patch_embed.proj.weight'; first keys: {list(sd)[:3]})"
        )
    return sd


class TimmViTBackbone:
    """A timm ``VisionTransformer`` (DINO, DINOv2) behind the ``Backbone`` protocol.

    Accepts timm checkpoints (``.safetensors`` / ``.bin`` / ``.pth``) and the official DINO
    and DINOv2 ``.pth`` files (timm's own ``checkpoint_filter_fn`` maps their key names, e.g.
    drops DINOv2's ``mask_token``). ``model_kwargs`` go to ``timm.create_model`` (tests use it
    to build small models of the same family).
    """

    def __init__(
        self,
        name: str,
        arch: str,
        image_size: int,
        layers: tuple[int, ...],
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        checkpoint: str | None = None,
        final_norm: bool = False,
        online: bool = False,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        timm = import_timm()
        self.name, self.arch, self.mean, self.std = name, arch, mean, std
        kwargs = {"num_classes": 0, "dynamic_img_size": True, **(model_kwargs or {})}
        if checkpoint is None and online:
            model = timm.create_model(arch, pretrained=True, **kwargs)  # online-only
        else:
            path = check_checkpoint(checkpoint, name)
            sd = read_vit_state_dict(path, name)  # read first: a wrong file fails before the build
            model = timm.create_model(arch, pretrained=False, **kwargs)
            self._load(model, sd, path)
        self.model = model.eval().requires_grad_(False)
        self.patch_size = int(model.patch_embed.patch_size[0])
        self.image_size = check_image_size(image_size, self.patch_size, name)
        self.layers = check_layers(layers, len(model.blocks), name)
        self.final_norm = bool(final_norm)
        self.grid = (image_size // self.patch_size, image_size // self.patch_size)

    def _load(self, model: torch.nn.Module, sd: StateDict, path: str) -> None:
        from timm.models.vision_transformer import checkpoint_filter_fn

        try:
            sd = checkpoint_filter_fn(sd, model)
        except Exception as exc:  # shape mismatches surface here for a wrong architecture
            raise BackboneConfigError(f"checkpoint {path!r} does not fit {self.name!r}: {exc}") from exc
        _load_strict(model, sd, path, self.name)

    def extract(self, images: torch.Tensor) -> BackboneOutput:
        """images (B, 3, S, S) -> per-layer (B, h*w, C) tokens and the final-norm [CLS] (B, C)."""
        images = check_images(images, self.image_size, self.name)
        wanted = sorted(set(self.layers))
        with torch.inference_mode():
            final, inter = self.model.forward_intermediates(
                images, indices=[i - 1 for i in wanted], norm=self.final_norm, output_fmt="NLC"
            )
        cls = final[:, 0].contiguous()
        return BackboneOutput(
            layers=_order(self.layers, dict(zip(wanted, inter, strict=True))), cls=cls, grid=self.grid
        )


def read_clip_state_dict(path: str) -> StateDict:
    """OpenAI CLIP ``.pt`` (TorchScript or state dict) or an open_clip checkpoint of a CLIP ViT."""
    sd = read_state_dict(path)
    if "visual.conv1.weight" not in sd:
        raise BackboneConfigError(
            f"checkpoint {path!r} is not a CLIP ViT state dict (no 'visual.conv1.weight'; "
            f"first keys: {list(sd)[:3]})"
        )
    return sd


class OpenClipBackbone:
    """The image tower of an open_clip ``CLIP`` ViT; the full model (text tower too) is ``model``.

    ``quick_gelu=True`` matches OpenAI's weights (open_clip's ``*-quickgelu`` configs); open_clip
    checkpoints trained with plain GELU (e.g. LAION) need ``quick_gelu=False``. The checkpoint
    cannot tell the two apart, which is why it is an argument.
    """

    def __init__(
        self,
        name: str,
        arch: str,
        image_size: int,
        layers: tuple[int, ...],
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        checkpoint: str | None = None,
        final_norm: bool = False,
        online: bool = False,
        quick_gelu: bool = True,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        open_clip = import_open_clip()
        self.name, self.arch, self.mean, self.std = name, arch, mean, std
        kwargs = {"force_quick_gelu": quick_gelu, **(model_kwargs or {})}
        if checkpoint is None and online:
            model = open_clip.create_model(arch, pretrained="openai", **kwargs)  # online-only
        else:
            path = check_checkpoint(checkpoint, name)
            sd = read_clip_state_dict(path)  # read first: a wrong file fails before the build
            model = open_clip.create_model(arch, pretrained=None, **kwargs)
            expected = model.state_dict().keys()  # TorchScript archives also hold transient buffers
            sd = {k: v for k, v in sd.items() if k in expected or not k.endswith("attn_mask")}
            if "logit_scale" in sd and sd["logit_scale"].ndim != model.logit_scale.ndim:
                sd["logit_scale"] = sd["logit_scale"].reshape(model.logit_scale.shape)
            if "logit_bias" not in sd and getattr(model, "logit_bias", None) is not None:
                sd["logit_bias"] = torch.zeros_like(model.logit_bias)
            _load_strict(model, sd, path, name)
        self.model = model.eval().requires_grad_(False)
        visual = self.model.visual
        if getattr(visual, "attn_pool", None) is not None or not hasattr(visual, "conv1"):
            raise BackboneConfigError(f"{arch!r} is not a plain CLIP ViT; only those are supported")
        self.patch_size = int(visual.conv1.kernel_size[0])
        self.image_size = check_image_size(image_size, self.patch_size, name)
        self.layers = check_layers(layers, len(visual.transformer.resblocks), name)
        self.final_norm = bool(final_norm)
        g = image_size // self.patch_size
        self.grid = (g, g)
        self._pos = self._position_embedding(g)

    def _position_embedding(self, g: int) -> torch.Tensor:
        """(1, 1 + g*g, C): open_clip's grid resized bicubically (as its ``resize_pos_embed``)."""
        pos = self.model.visual.positional_embedding.detach()
        cls_pos, grid = pos[:1], pos[1:]
        old = round(grid.shape[0] ** 0.5)
        if old * old != grid.shape[0]:
            raise BackboneConfigError(
                f"{self.name!r}: positional embedding of {pos.shape[0]} tokens is not 1 + g*g"
            )
        if old != g:
            grid = grid.reshape(1, old, old, -1).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(g, g), mode="bicubic", antialias=True, align_corners=False)
            grid = grid.permute(0, 2, 3, 1).reshape(g * g, -1)
        return torch.cat([cls_pos, grid], dim=0).unsqueeze(0)

    def extract(self, images: torch.Tensor) -> BackboneOutput:
        """images (B, 3, S, S) -> per-layer (B, h*w, C) tokens and the projected [CLS] (B, D)."""
        images = check_images(images, self.image_size, self.name)
        v = self.model.visual
        wanted = set(self.layers)
        taken: dict[int, torch.Tensor] = {}
        with torch.inference_mode():
            x = v.conv1(images.to(v.conv1.weight.dtype))
            b, c = x.shape[:2]
            x = x.reshape(b, c, -1).permute(0, 2, 1)
            x = torch.cat([v.class_embedding.reshape(1, 1, c).expand(b, 1, c).to(x.dtype), x], dim=1)
            x = v.ln_pre(v.patch_dropout(x + self._pos.to(x.dtype)))
            batch_first = getattr(v.transformer, "batch_first", False)
            x = x if batch_first else x.transpose(0, 1)
            for i, block in enumerate(v.transformer.resblocks, start=1):
                x = block(x)
                if i in wanted:
                    tokens = (x if batch_first else x.transpose(0, 1))[:, 1:]
                    taken[i] = (v.ln_post(tokens) if self.final_norm else tokens).float().contiguous()
            x = x if batch_first else x.transpose(0, 1)
            cls = v.ln_post(x[:, 0])
            if v.proj is not None:
                cls = cls @ v.proj
        return BackboneOutput(layers=_order(self.layers, taken), cls=cls.float(), grid=self.grid)
