"""``--device``: resolution, TF32 off for fp32, device-sized blocks, precisions per device, the
autotuner's timer and cache. Runs on a CPU-only machine: CUDA is simulated by monkeypatching
``torch.cuda``, and the tests at the end that need a real GPU skip without one."""

from __future__ import annotations

import pytest
import torch

from codegraph_ad.engine import autotune, device, mutual, products
from codegraph_ad.engine.device import (
    CPU_BLOCK_CAP_BYTES,
    CUDA_BLOCK_CAP_FALLBACK,
    CUDA_BLOCK_CAP_MAX,
    block_cap_bytes,
    fp32_matmul,
    precision_available,
    resolve_device,
)
from codegraph_ad.errors import ConfigError
from tests.conftest import unit_features

CUDA = torch.device("cuda")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch):
    """A machine that reports one CUDA device of a chosen compute capability."""

    def set_gpu(capability: tuple[int, int] = (8, 0), bf16: bool = True, count: int = 1) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: capability)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)

    return set_gpu


@pytest.fixture
def tf32_state():
    """Put back the process-wide TF32 settings a test changes (legacy and new API alike)."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    new_api = hasattr(matmul, "fp32_precision")
    legacy = torch.get_float32_matmul_precision()
    saved_new = matmul.fp32_precision if new_api else None
    saved_cudnn = cudnn.allow_tf32
    yield new_api
    torch.set_float32_matmul_precision(legacy)
    if new_api:
        matmul.fp32_precision = saved_new
    cudnn.allow_tf32 = saved_cudnn
    assert torch.get_float32_matmul_precision() == legacy  # readable again: nothing left mixed


# -- resolve_device ---------------------------------------------------------------------------


def test_cpu_and_auto_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "CUDA"])
def test_cuda_without_a_gpu_is_a_config_error_naming_the_flag(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"--device .*no usable CUDA device.*--device cpu"):
        resolve_device(name)


@pytest.mark.parametrize("name", ["gpu", "mps", "", 3])
def test_unknown_device_names_are_refused(name) -> None:
    with pytest.raises(ConfigError, match="--device"):
        resolve_device(name)


def test_auto_and_cuda_with_a_gpu(fake_cuda) -> None:
    fake_cuda(count=1)
    assert resolve_device("auto") == CUDA
    assert resolve_device("cuda") == CUDA
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ConfigError, match="1 CUDA device"):
        resolve_device("cuda:1")


def test_this_machine_resolves_auto_to_what_it_has() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


# -- fp32_matmul ------------------------------------------------------------------------------


def test_fp32_matmul_turns_tf32_off_on_cuda_and_restores(tf32_state) -> None:
    torch.set_float32_matmul_precision("high")  # a user who allowed TF32
    torch.backends.cudnn.allow_tf32 = True
    with fp32_matmul(CUDA):
        assert torch.backends.cuda.matmul.allow_tf32 is False
        assert torch.backends.cudnn.allow_tf32 is False
        assert torch.get_float32_matmul_precision() == "highest"
    assert torch.backends.cuda.matmul.allow_tf32 is True
    assert torch.backends.cudnn.allow_tf32 is True
    assert torch.get_float32_matmul_precision() == "high"


def test_fp32_matmul_restores_when_the_body_raises(tf32_state) -> None:
    torch.set_float32_matmul_precision("high")
    with pytest.raises(KeyError), fp32_matmul("cuda"):
        raise KeyError("boom")
    assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32 is True


def test_fp32_matmul_respects_a_new_api_setting(tf32_state) -> None:
    if not tf32_state:
        pytest.skip("this torch has no fp32_precision API")
    matmul = torch.backends.cuda.matmul
    torch.set_float32_matmul_precision("highest")
    matmul.fp32_precision = "tf32"  # set through the new API only: the legacy getter now refuses
    with fp32_matmul(CUDA):
        assert matmul.fp32_precision == "ieee"
        assert torch.backends.cudnn.allow_tf32 is False
    assert matmul.fp32_precision == "tf32"


def test_fp32_matmul_is_a_no_op_on_the_cpu(tf32_state, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_float32_matmul_precision("high")
    calls = []
    monkeypatch.setattr(torch, "set_float32_matmul_precision", lambda p: calls.append(p))
    with fp32_matmul("cpu"):
        assert torch.get_float32_matmul_precision() == "high"
        assert torch.backends.cudnn.allow_tf32 is True
    assert calls == []


# -- block_cap_bytes and precision_available ----------------------------------------------------


def test_cpu_block_cap_is_the_engines_cache_cap() -> None:
    assert block_cap_bytes("cpu") == CPU_BLOCK_CAP_BYTES == 4 * 1024 * 1024
    assert block_cap_bytes(torch.device("cpu")) == mutual._BLOCK_CAP_BYTES  # switching to it changes nothing


@pytest.mark.parametrize(("free", "cap"), [
    (80 * 1024**3, CUDA_BLOCK_CAP_MAX),  # an H100: capped at 4 GiB
    (8 * 1024**3, 1024**3),  # an eighth of the free memory
    (64 * 1024**2, 16 * 1024**2),  # almost full: never below 16 MiB
])
def test_cuda_block_cap_follows_free_memory(monkeypatch: pytest.MonkeyPatch, free: int, cap: int) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda d=None: (free, 2 * free))
    assert block_cap_bytes(CUDA) == cap


def test_cuda_block_cap_without_a_driver_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_driver(d=None):
        raise RuntimeError("no CUDA driver")

    monkeypatch.setattr(torch.cuda, "mem_get_info", no_driver)
    assert block_cap_bytes("cuda") == CUDA_BLOCK_CAP_FALLBACK == 1024**3


def test_every_precision_runs_on_the_cpu() -> None:
    assert all(precision_available(p, "cpu") for p in ("fp32", "bf16", "int8", "fast"))
    with pytest.raises(ValueError, match="precision"):
        precision_available("fp16", "cpu")


def test_reduced_precisions_need_sm80(fake_cuda) -> None:
    fake_cuda(capability=(7, 5), bf16=False)  # a T4
    assert precision_available("fp32", CUDA) and precision_available("fast", CUDA)
    assert not precision_available("bf16", CUDA) and not precision_available("int8", CUDA)
    fake_cuda(capability=(9, 0), bf16=True)  # an H100 / H200
    assert precision_available("bf16", CUDA) and precision_available("int8", CUDA)


def test_no_reduced_precision_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not precision_available("int8", CUDA) and precision_available("fp32", CUDA)


# -- products ---------------------------------------------------------------------------------


def test_make_product_falls_back_to_fp32_where_the_device_cannot(fake_cuda) -> None:
    fake_cuda(capability=(7, 0), bf16=False)
    for precision in ("bf16", "int8"):
        with pytest.warns(RuntimeWarning, match="sm80"):
            assert isinstance(products.make_product(precision, 64, CUDA), products.Fp32Product)
    fake_cuda(capability=(8, 0), bf16=True)
    assert isinstance(products.make_product("int8", 64, CUDA), products.Int8Product)
    assert isinstance(products.make_product("int8", 12, CUDA), products.Fp32Product)  # _int_mm shape rules


def test_products_on_the_cpu_are_unchanged() -> None:
    x = unit_features(4, 24, 40, seed=3).reshape(-1, 40)
    fp32 = products.make_product("fp32", 24, "cpu")
    assert torch.equal(fp32.block(x, fp32.right(x)), x @ x.T)
    int8 = products.make_product("int8", 24, "cpu")
    assert isinstance(int8, products.Int8Product)
    low = int8.prepare(x)
    assert low.dtype == torch.int8 and low.shape == (96, 40) and low.device == x.device
    assert torch.equal(products.make_product("int8", 24).prepare(x), low)  # no device: the same


def test_products_stay_on_the_device_of_their_input() -> None:
    """The meta device stands in for a GPU: anything that copies to the CPU fails there."""
    x = torch.empty(64, 48, device="meta")
    for product in (products.Fp32Product(), products.Bf16Product()):
        low = product.prepare(x)
        out = product.block(low, product.right(low))
        assert out.device.type == "meta" and out.shape == (64, 64)


def test_fp32_product_on_cuda_runs_with_tf32_off(tf32_state) -> None:
    torch.set_float32_matmul_precision("high")
    seen = []

    class CudaOperand:  # what the product sees of a CUDA tensor: is_cuda, device and @
        is_cuda = True
        device = CUDA

        def __matmul__(self, other):
            seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
            return "block"

    assert products.Fp32Product().block(CudaOperand(), None) == "block"
    assert seen == [(False, False)]
    assert torch.get_float32_matmul_precision() == "high"


# -- autotune ---------------------------------------------------------------------------------


def test_autotune_cache_key_includes_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_time_modes(dev: torch.device, n_patches: int, engine, modes=autotune.MUSC_MODES) -> str:
        calls.append((dev.type, n_patches))
        return {"cpu": "fp32", "cuda": "int8"}[dev.type]

    def engine(*a, **k):
        return None

    monkeypatch.setattr(autotune, "_time_modes", fake_time_modes)
    autotune._fastest.cache_clear()
    try:
        assert autotune.fastest_reduced_precision(256, engine) == "fp32"
        assert autotune.fastest_reduced_precision(256, engine, torch.device("cpu")) == "fp32"
        assert autotune.fastest_reduced_precision(256, engine, "cuda") == "int8"
        assert autotune.fastest_reduced_precision(256, engine, "cuda:0") == "int8"
        assert autotune.fastest_reduced_precision(1024, engine, "cpu") == "fp32"
        assert calls == [("cpu", 256), ("cuda", 256), ("cpu", 1024)]
    finally:
        autotune._fastest.cache_clear()


def test_product_timer_waits_for_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    synced = []
    monkeypatch.setattr(autotune, "synchronize", lambda d: synced.append(torch.device(d).type))
    x = unit_features(1, 64, 32).reshape(64, 32)
    assert autotune.product_seconds(products.Fp32Product(), x, repeats=2) > 0
    assert synced == ["cpu"] * 4  # before and after each timed product


def test_engine_is_timed_on_the_requested_device(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    synced = []

    def engine(x, budget_mb, precision):
        seen.append((x.device.type, tuple(x.shape), budget_mb, precision))

    monkeypatch.setattr(autotune, "synchronize", lambda d: synced.append(torch.device(d).type))
    monkeypatch.setattr(autotune, "_plausible_modes", lambda **k: ["fp32", "int8"])
    assert autotune._time_modes(torch.device("cpu"), 64, engine) in ("fp32", "int8")
    assert {s[:3] for s in seen} == {("cpu", (64, 64, 384), 256)}  # 4,096 patches, 256 MB, as before
    assert synced and set(synced) == {"cpu"}


def test_bare_products_skip_what_the_device_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autotune, "precision_available", lambda p, d: p != "bf16")
    x = unit_features(1, 64, 32).reshape(64, 32)
    assert set(autotune.bare_product_seconds(x, repeats=1)) == {"fp32", "int8"}


# -- a real GPU -------------------------------------------------------------------------------


@needs_cuda
def test_cuda_products_match_the_cpu() -> None:
    x = unit_features(4, 64, 384, seed=5).reshape(-1, 384)
    xc = x.to("cuda")
    for precision, atol in (("fp32", 1e-5), ("bf16", 2e-2)):
        if not precision_available(precision, xc.device):
            continue
        p = products.make_product(precision, 64, xc.device)
        low = p.prepare(xc)
        got = p.to_similarity(p.block(low, p.right(low))).float().cpu()
        torch.testing.assert_close(got, x @ x.T, atol=atol, rtol=0)
    if precision_available("int8", xc.device):
        cpu, gpu = products.Int8Product(), products.Int8Product()
        a = cpu.to_similarity(cpu.block(cpu.prepare(x), cpu.right(cpu.prepare(x))))
        lg = gpu.prepare(xc)
        b = gpu.to_similarity(gpu.block(lg, gpu.right(lg))).cpu()
        torch.testing.assert_close(b, a, atol=2e-3, rtol=0)


@needs_cuda
def test_cuda_autotune_and_block_cap() -> None:
    assert 16 * 1024**2 <= block_cap_bytes("cuda") <= CUDA_BLOCK_CAP_MAX
    x = unit_features(1, 512, 384).reshape(512, 384).to("cuda")
    seconds = autotune.bare_product_seconds(x, repeats=2)
    assert "fp32" in seconds and all(s > 0 for s in seconds.values())
    assert device.synchronize("cuda") is None
