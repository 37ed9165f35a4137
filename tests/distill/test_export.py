"""ONNX export of the distilled detector: same maps as PyTorch, runnable without PyTorch, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from codegraph_ad.config import FeatureConfig
from codegraph_ad.distill.config import DistillConfig, HeadConfig, PseudoMaskConfig, TrainConfig
from codegraph_ad.distill.detector import DistilledDetector
from codegraph_ad.distill.distill_head import train_patch_head
from codegraph_ad.distill.export import export_onnx
from codegraph_ad.distill.model_file import load_model
from codegraph_ad.distill.onnx_runtime import MAP_OUTPUT, SCORE_OUTPUT, OnnxDetector, preprocess
from codegraph_ad.errors import InputError

from .test_pseudomask_run import distill_cli

SMALL = FeatureConfig(image_size=56, batch_size=8)  # 4 x 4 patches
FAST = TrainConfig(epochs=10, lr=3e-3, batch_images=4)
RUNTIME = Path(__file__).resolve().parents[2] / "src" / "codegraph_ad" / "distill" / "onnx_runtime.py"


@pytest.fixture(scope="module")
def backbone():
    from codegraph_ad.distill.detector import load_feature_backbone

    return load_feature_backbone(SMALL, threads=1)


def trained(tmp_path: Path, toy_run: dict, backbone, head: HeadConfig, features: FeatureConfig = SMALL):
    cfg = DistillConfig(features=features, head=head, train=FAST)
    det, _ = train_patch_head(toy_run["run"], tmp_path / "head.pt", cfg, pseudo=PseudoMaskConfig(scope="batch"),
                              progress=False, backbone=backbone)
    return det, tmp_path / "head.pt"


def toy_rgbs(toy_run: dict) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in toy_run["paths"]]


@pytest.mark.parametrize("head", [HeadConfig(hidden=0, degrees=(1, 3)), HeadConfig(hidden=16, degrees=(1, 3, 5))],
                         ids=["linear", "mlp"])
def test_exported_maps_equal_pytorch(tmp_path: Path, toy_run: dict, backbone, head: HeadConfig) -> None:
    det, model = trained(tmp_path, toy_run, backbone, head)
    res = export_onnx(model, tmp_path / "head.onnx", threads=1)
    assert res.max_abs_diff is not None and res.max_abs_diff < 1e-4 and res.grid == (4, 4)

    onnx_det = OnnxDetector(res.path, threads=1)
    maps = []
    for rgb in toy_rgbs(toy_run):
        ref = det.predict(rgb).probs.numpy()
        got = onnx_det.predict(rgb)
        assert got.shape == (4, 4)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)
        maps.append(ref)
    assert np.ptp(np.stack(maps)) > 1e-3  # a trained head, not a constant map: the comparison can fail

    # one graph, backbone included; image score output = max of the map; metadata for a runtime
    m = onnx.load(str(res.path))
    assert [i.name for i in m.graph.input] == ["image"]
    assert [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim][1:] == [3, 56, 56]
    assert any(n.op_type == "MatMul" and n.name.startswith("/backbone/encoder/") for n in m.graph.node)
    x = np.concatenate([preprocess(r, 56, onnx_det.mean, onnx_det.std) for r in toy_rgbs(toy_run)[:2]])
    probs, score = onnx_det.session.run([MAP_OUTPUT, SCORE_OUTPUT], {"image": x})
    np.testing.assert_allclose(score, probs.reshape(2, -1).max(axis=1))
    meta = onnx_det.metadata
    assert meta["image_size"] == 56 and meta["grid"] == [4, 4] and meta["kind"] == "patch_head"
    assert meta["mean"] == list(backbone.mean) and meta["std"] == list(backbone.std)
    assert meta["config"] == load_model(model).config


def test_export_refuses_what_it_cannot_write(tmp_path: Path, toy_run: dict, backbone) -> None:
    _, model = trained(tmp_path, toy_run, backbone, HeadConfig())
    out = tmp_path / "head.onnx"
    out.write_bytes(b"x")
    with pytest.raises(InputError, match="exists"):
        export_onnx(model, out)
    from codegraph_ad.distill.model_file import ModelFile, save_model

    mf = load_model(model)
    save_model(tmp_path / "text.pt", ModelFile("aprilgan", mf.config, mf.state_dict))
    with pytest.raises(InputError, match="patch head only"):
        export_onnx(tmp_path / "text.pt", tmp_path / "t.onnx")
    cfg = json.loads(json.dumps(mf.config))
    cfg["features"]["backbone"] = "dinov2_vits14"
    save_model(tmp_path / "other.pt", ModelFile("patch_head", cfg, mf.state_dict))
    with pytest.raises(InputError, match="dinov2_vits14_imgfocus"):
        export_onnx(tmp_path / "other.pt", tmp_path / "o.onnx")
    with pytest.raises(ValueError, match="not a codegraph-ad ONNX detector"):
        onnx_plain = tmp_path / "plain.onnx"
        from onnx import TensorProto, helper

        g = helper.make_graph([helper.make_node("Identity", ["image"], ["probs"])], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1])])
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)]), str(onnx_plain))
        OnnxDetector(onnx_plain)


# Run in a fresh interpreter where ``import torch`` fails: the runtime file is loaded by path
# (no codegraph_ad package import), predicts one image and saves the map.
NO_TORCH = textwrap.dedent("""
    import importlib.abc, importlib.util, sys
    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch.") or name == "codegraph_ad" or name.startswith("codegraph_ad."):
                raise ImportError(f"{name} is hidden in this test")
            return None
    sys.meta_path.insert(0, NoTorch())
    for mod in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
        del sys.modules[mod]
    try:
        import torch
    except ImportError:
        pass
    else:
        raise SystemExit("torch is importable: the blocker does not work")
    runtime_file, model, image, out = sys.argv[1:]
    spec = importlib.util.spec_from_file_location("onnx_runtime", runtime_file)
    rt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rt)
    import numpy as np
    np.save(out, rt.predict_file(model, image, threads=1))
    assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch got imported"
    print("ran without torch")
""")


def test_runtime_runs_without_torch(tmp_path: Path, toy_run: dict, backbone) -> None:
    det, model = trained(tmp_path, toy_run, backbone, HeadConfig(hidden=8))
    res = export_onnx(model, tmp_path / "head.onnx", check=False)
    image = toy_run["paths"][5]
    out = tmp_path / "map.npy"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, str(RUNTIME), str(res.path), str(image), str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "ran without torch" in proc.stdout
    ref = det.predict(np.asarray(Image.open(image).convert("RGB"))).probs.numpy()
    np.testing.assert_allclose(np.load(out), ref, rtol=0, atol=1e-4)


def test_cli_export(tmp_path: Path, toy_run: dict, backbone, capsys: pytest.CaptureFixture[str],
                    monkeypatch: pytest.MonkeyPatch) -> None:
    from codegraph_ad.distill import detector

    det, model = trained(tmp_path, toy_run, backbone, HeadConfig())
    monkeypatch.setattr(detector, "load_feature_backbone", lambda features, threads=None: backbone)
    out = tmp_path / "exported" / "head.onnx"
    assert distill_cli(["export", str(model), "--format", "onnx", "--out", str(out), "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "probs (1, 4, 4)" in text and "check: max |ONNX - PyTorch|" in text
    rgb = toy_rgbs(toy_run)[6]
    np.testing.assert_allclose(OnnxDetector(out).predict(rgb), det.predict(rgb).probs.numpy(), rtol=0, atol=1e-4)
    with pytest.raises(InputError, match="exists"):
        distill_cli(["export", str(model), "--out", str(out)])
    assert distill_cli(["export", str(model), "--out", str(out), "--overwrite", "--no-check"]) == 0
    assert "check:" not in capsys.readouterr().out


@pytest.mark.realdata
def test_exported_maps_equal_pytorch_on_bottle(tmp_path: Path, toy_run: dict, bottle_dir: Path) -> None:
    """A head at 224 px (16 x 16 patches) on real bottle images, good and defective."""
    from codegraph_ad.distill.detector import load_feature_backbone

    features = FeatureConfig(image_size=224, batch_size=8)
    det, model = trained(tmp_path, toy_run, load_feature_backbone(features, threads=1), HeadConfig(hidden=16),
                         features)
    onnx_det = OnnxDetector(export_onnx(model, tmp_path / "head.onnx", check=False).path, threads=1)
    images = [sorted((bottle_dir / "test" / d).glob("*.png"))[0] for d in ("good", "broken_large", "contamination")]
    for path in images:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        ref = det.predict(rgb).probs.numpy()
        got = onnx_det.predict(rgb)
        assert got.shape == (16, 16)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4, err_msg=str(path))
    assert isinstance(det, DistilledDetector)


def test_runtime_preprocess_is_to_model_input() -> None:
    """The numpy preprocessing repeats the torch one bit for bit (any size, any aspect)."""
    from codegraph_ad.backbones.base import IMAGENET_MEAN, IMAGENET_STD
    from codegraph_ad.features.preprocess import to_model_input

    rgb = np.random.default_rng(3).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    ref = to_model_input(rgb, 56, IMAGENET_MEAN, IMAGENET_STD).numpy()
    got = preprocess(rgb, 56, IMAGENET_MEAN, IMAGENET_STD)
    assert got.shape == (1, 3, 56, 56) and got.dtype == np.float32
    np.testing.assert_array_equal(got[0], ref)
    with pytest.raises(ValueError, match="uint8"):
        preprocess(rgb.astype(np.float32), 56, IMAGENET_MEAN, IMAGENET_STD)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
def test_runtime_decodes_files_like_the_package(tmp_path: Path, mode: str) -> None:
    from codegraph_ad.distill.onnx_runtime import load_rgb
    from codegraph_ad.io.images import load_image_rgb

    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (20, 30, 4), dtype=np.uint8), "RGBA")
    img = img if mode == "RGBA" else img.convert(mode)
    path = tmp_path / f"x_{mode}.png"
    img.save(path)
    np.testing.assert_array_equal(load_rgb(path), load_image_rgb(path))
