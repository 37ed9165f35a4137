"""The embedded ViT-S/14: graph surgery, caching, and the PyTorch port against ONNX Runtime."""

from __future__ import annotations

import math
import os
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from codegraph_ad.backbones import imgfocus_onnx
from codegraph_ad.backbones.dinov2_port import Dinov2Port, load_port_from_onnx
from codegraph_ad.backbones.embedded import EmbeddedViTS14

TOL = 1e-3  # abs, on block outputs of magnitude ~10-60


@pytest.fixture(scope="module")
def port() -> Dinov2Port:
    return load_port_from_onnx()


def images(size: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_feature_graph_is_cached_and_pruned(onnx_cache: Path) -> None:
    path = imgfocus_onnx.feature_model_path()
    assert path.parent == onnx_cache
    mtime = path.stat().st_mtime_ns
    assert imgfocus_onnx.feature_model_path() == path and path.stat().st_mtime_ns == mtime  # reused
    assert not list(onnx_cache.glob("*.tmp"))
    model = onnx.load(str(path))
    outputs = {o.name for o in model.graph.output}
    assert {imgfocus_onnx.block_output_name(b) for b in range(1, 13)} <= outputs
    assert {imgfocus_onnx.normed_output_name(b) for b in range(1, 13)} <= outputs
    assert not any(t.name.startswith("decoder.") for t in model.graph.initializer)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert len(model.graph.output) == 24


@pytest.mark.parametrize("size", [224, 266])
def test_port_matches_onnx_runtime(port: Dinov2Port, size: int) -> None:
    x = images(size, batch=2)
    ort_out = EmbeddedViTS14(size, threads=2).extract(x)
    with torch.inference_mode():
        blocks, cls = port.forward_blocks(x, (3, 6, 9, 12))
    assert ort_out.grid == (size // 14, size // 14)
    for got, want in zip(ort_out.layers, blocks, strict=True):
        assert got.shape == (2, (size // 14) ** 2, 384)
        torch.testing.assert_close(got, want[:, 1:], atol=TOL, rtol=0)
    torch.testing.assert_close(ort_out.cls, cls, atol=TOL, rtol=0)


def test_final_norm_tokens_match_between_backends(port: Dinov2Port) -> None:
    x = images(224, seed=1)
    ort_out = EmbeddedViTS14(224, layers=(2, 12), final_norm=True, threads=2).extract(x)
    with torch.inference_mode():
        blocks, cls = port.forward_blocks(x, (2, 12), final_norm=True)
    for got, want in zip(ort_out.layers, blocks, strict=True):
        torch.testing.assert_close(got, want[:, 1:], atol=5e-3, rtol=1e-4)
    torch.testing.assert_close(cls, blocks[1][:, 0])  # [CLS] is the final LayerNorm of block 12


def test_torch_backend_keeps_requested_order() -> None:
    out = EmbeddedViTS14(224, layers=(12, 1), backend="torch").extract(images(224))
    assert out.grid == (16, 16) and out.cls.shape == (1, 384)
    assert [t.shape for t in out.layers] == [(1, 256, 384)] * 2
    assert out.layers[0].abs().mean() > out.layers[1].abs().mean()  # block 12 first, then block 1


def test_onnx_runs_at_other_multiples_of_14() -> None:
    out = EmbeddedViTS14(448, layers=(9,), threads=2).extract(images(448))
    assert out.grid == (32, 32) and out.layers[0].shape == (1, 1024, 384)
    assert torch.isfinite(out.layers[0]).all() and torch.isfinite(out.cls).all()


def test_position_embedding_resize_is_identity_at_native_grid(port: Dinov2Port) -> None:
    pos = port.position_embedding(37, 37)
    torch.testing.assert_close(pos[:, 1:], port.pos_grid_embed, atol=1e-6, rtol=0)
    assert port.position_embedding(16, 16).shape == (1, 257, 384)


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="225"):
        EmbeddedViTS14(225)
    with pytest.raises(ValueError, match="13"):
        EmbeddedViTS14(224, layers=(3, 13))
    with pytest.raises(ValueError, match="0"):
        EmbeddedViTS14(224, layers=(0,))
    with pytest.raises(ValueError, match="backend"):
        EmbeddedViTS14(224, backend="tf")  # type: ignore[arg-type]
    backbone = EmbeddedViTS14(224, threads=1)
    with pytest.raises(ValueError, match="image_size=224"):
        backbone.extract(images(266))


def _graph_with_pos_embed(cls_shape: list[int], grid_shape: list[int]) -> onnx.GraphProto:
    inits = [
        helper.make_tensor("onnx::Concat_1", TensorProto.FLOAT, cls_shape, [0.0] * math.prod(cls_shape)),
        helper.make_tensor("onnx::Reshape_2", TensorProto.FLOAT, grid_shape, [0.0] * math.prod(grid_shape)),
    ]
    nodes = [
        helper.make_node("Identity", ["onnx::Concat_1"], ["a"], name=imgfocus_onnx.POS_CLS_CONSUMER),
        helper.make_node("Identity", ["onnx::Reshape_2"], ["b"], name=imgfocus_onnx.POS_GRID_CONSUMER),
    ]
    return helper.make_graph(nodes, "g", [], [], initializer=inits)


def test_position_embedding_shapes_are_asserted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imgfocus_onnx, "WIDTH", 4)
    monkeypatch.setattr(imgfocus_onnx, "POS_GRID", 2)
    imgfocus_onnx.check_position_embedding(_graph_with_pos_embed([1, 1, 4], [1, 4, 4]))
    with pytest.raises(RuntimeError, match="position embedding shapes"):
        imgfocus_onnx.check_position_embedding(_graph_with_pos_embed([1, 1, 4], [1, 9, 4]))


def test_cache_dir_env_and_atomic_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEGRAPH_AD_CACHE", str(tmp_path / "c"))
    assert imgfocus_onnx.cache_dir() == tmp_path / "c"
    target = tmp_path / "c" / "x.bin"
    imgfocus_onnx.write_bytes(target, b"abc")  # the cached graph is written with io.atomic
    assert target.read_bytes() == b"abc" and os.listdir(target.parent) == ["x.bin"]
