"""The embedded backbone on a chosen device: the default CPU path untouched, the PyTorch port
for anything else (bf16 autocast runs on the CPU too), clear errors where a GPU is asked for
and missing. The tests marked ``needs_cuda`` compare a real GPU with ONNX Runtime."""

from __future__ import annotations

import pytest
import torch

from codegraph_ad.backbones import BackboneConfigError
from codegraph_ad.backbones.device import resolve_device
from codegraph_ad.backbones.embedded import EmbeddedViTS14
from codegraph_ad.backbones.from_config import backbone_from_config, place_backbone
from codegraph_ad.config import FeatureConfig
from codegraph_ad.errors import ConfigError

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CONFIG = FeatureConfig(image_size=224, layers=(3, 12))


def images(size: int = 224, batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def port_bf16() -> EmbeddedViTS14:
    return backbone_from_config(CONFIG, threads=2, device="cpu", precision="bf16")


def test_cpu_fp32_is_the_onnx_runtime_model_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cpu", "auto", torch.device("cpu")):
        model = backbone_from_config(CONFIG, 2, device=device)
        assert isinstance(model, EmbeddedViTS14) and model.backend == "onnx" and model.device.type == "cpu"
    assert model.to_device("cpu", "fp32") is model


def test_bf16_autocast_runs_the_torch_port_and_returns_cpu_float32(port_bf16: EmbeddedViTS14) -> None:
    assert port_bf16.backend == "torch" and port_bf16.precision == "bf16"
    x = images()
    bf16 = port_bf16.extract(x)
    fp32 = EmbeddedViTS14(224, layers=(3, 12), threads=2).extract(x)  # ONNX Runtime, the reference
    for got, want in zip(bf16.layers, fp32.layers, strict=True):
        assert got.dtype == torch.float32 and got.device.type == "cpu" and got.shape == want.shape
        assert float((got - want).norm() / want.norm()) < 0.03  # bf16 matmuls: ~1% measured
        assert float(torch.nn.functional.cosine_similarity(got, want, dim=-1).min()) > 0.999
        assert not torch.equal(got, want)  # it did run in bf16
    assert bf16.cls.dtype == torch.float32 and bf16.grid == (16, 16)


def test_onnx_twin_and_moves(port_bf16: EmbeddedViTS14) -> None:
    onnx = EmbeddedViTS14(224, layers=(3, 12), threads=2)
    twin = onnx.to_device(torch.device("cpu"), "bf16")
    assert twin is not onnx and twin.backend == "torch" and twin.precision == "bf16" and onnx.backend == "onnx"
    assert twin.layers == onnx.layers and twin.image_size == 224 and twin.threads == 2
    assert port_bf16.to_device("cpu", "bf16") is port_bf16


@pytest.mark.parametrize("kwargs", [{"device": "cuda"}, {"precision": "bf16"}])
def test_onnx_runtime_refuses_a_gpu_or_bf16(kwargs: dict) -> None:
    with pytest.raises(BackboneConfigError, match="backend='torch'"):
        EmbeddedViTS14(224, **kwargs)


def test_embedded_precision_is_checked() -> None:
    with pytest.raises(BackboneConfigError, match="precision"):
        EmbeddedViTS14(224, backend="torch", precision="fp16")  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_fails_before_building_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_build(*a, **k):
        raise AssertionError("built a backbone")

    monkeypatch.setattr("codegraph_ad.backbones.from_config.create_backbone", no_build)
    with pytest.raises(ConfigError, match="--device"):
        backbone_from_config(CONFIG, device="cuda")


def test_a_backbone_without_to_device_stays_on_the_cpu_with_a_warning() -> None:
    class Plain:
        name = "plain"

    model = Plain()
    with pytest.warns(RuntimeWarning, match="'plain' has no to_device"):
        assert place_backbone(model, torch.device("cuda"), "bf16") is model


@needs_cuda
def test_cuda_port_matches_onnx_runtime() -> None:
    x = images(224, batch=2, seed=3)
    want = EmbeddedViTS14(224, layers=(3, 12)).extract(x)
    gpu = backbone_from_config(CONFIG, device="cuda")
    assert gpu.backend == "torch" and gpu.device == resolve_device("cuda")
    got = gpu.extract(x)
    for g, w in zip(got.layers, want.layers, strict=True):
        assert g.device.type == "cpu" and g.dtype == torch.float32
        torch.testing.assert_close(g, w, atol=1e-3, rtol=0)  # TF32 off: the port's CPU tolerance
    bf16 = backbone_from_config(CONFIG, device="cuda", precision="bf16").extract(x)
    for g, w in zip(bf16.layers, want.layers, strict=True):
        assert float(torch.nn.functional.cosine_similarity(g, w, dim=-1).min()) > 0.999
