"""CLIP-based models end to end on a randomly initialised tiny CLIP (no weights exist offline).

What is checked is the machinery, not accuracy: strict loading from a local checkpoint, the
text encoder twins, WinCLIP windows against brute force, loss falling on a fixed toy set,
model-file round trips, and prediction shapes and ranges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from codegraph_ad.backbones import BackboneConfigError
from codegraph_ad.backbones.clip import ClipConfig
from codegraph_ad.distill.config import PseudoMaskConfig, TextModelConfig, TrainConfig
from codegraph_ad.io.images import load_image_rgb
from codegraph_ad.methods.winclip import WinClipConfig

from .conftest import TINY_ARCH

try:  # through the torchvision workaround, never a bare `import open_clip`
    from codegraph_ad.backbones._optional import import_open_clip

    import_open_clip()
except ImportError as exc:  # pragma: no cover - depends on the optional extras
    pytest.skip(f"open_clip not installed: {exc}", allow_module_level=True)


@pytest.fixture(scope="module")
def clip_config(tiny_clip_checkpoint: Path) -> ClipConfig:
    return ClipConfig(arch=TINY_ARCH, checkpoint=str(tiny_clip_checkpoint), image_size=64)


@pytest.fixture(scope="module")
def bundle(clip_config: ClipConfig):
    from codegraph_ad.backbones.clip import load_clip

    return load_clip(clip_config)


def test_load_clip_strict_and_default_layers(bundle, clip_config: ClipConfig, tmp_path: Path) -> None:
    from codegraph_ad.backbones.clip import load_clip, open_clip_arch
    from codegraph_ad.backbones.registry import evenly_spaced_layers

    assert bundle.backbone.layers == (1, 2, 3, 4) and bundle.backbone.grid == (8, 8)
    assert (bundle.embed_dim, bundle.vision_width, bundle.text_width) == (32, 64, 32)
    assert evenly_spaced_layers(24) == (6, 12, 18, 24) and evenly_spaced_layers(3) == (1, 2, 3)
    assert open_clip_arch("clip_vitl14_336") == "ViT-L-14-336"
    with pytest.raises(BackboneConfigError, match="not a CLIP"):
        open_clip_arch("dinov2_vits14")
    sd = torch.load(clip_config.checkpoint, weights_only=True)
    sd.pop("visual.proj")
    torch.save(sd, tmp_path / "broken.pt")
    with pytest.raises(BackboneConfigError, match="does not fit"):
        load_clip(ClipConfig(arch=TINY_ARCH, checkpoint=str(tmp_path / "broken.pt"), image_size=64))
    with pytest.raises(BackboneConfigError, match="unknown open_clip model"):
        load_clip(ClipConfig(arch="no-such-clip", checkpoint=clip_config.checkpoint))


def test_text_encoder_twins(bundle) -> None:
    from codegraph_ad.methods.clip_text import (
        encode_tokens,
        ensemble_prompts,
        state_embeddings,
    )

    model, tok = bundle.model, bundle.tokenizer
    ids = tok(["a photo of a damaged object.", "a photo of a flawless object."])
    with torch.no_grad():
        torch.testing.assert_close(encode_tokens(model, ids), model.encode_text(ids))
        # learned context equal to the placeholder's own embeddings reproduces the plain encoder
        ids_x = tok(["X X X object."])
        ctx = model.token_embedding(ids_x)[:, 1:4]
        torch.testing.assert_close(encode_tokens(model, ids_x, ctx), model.encode_text(ids_x))
    text = state_embeddings(model, tok, "bottle")
    assert text.shape == (2, 32)
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(2))
    assert len(ensemble_prompts("bottle", ("{}", "broken {}"))) == 44


def test_window_index_and_harmonic_mean_brute_force() -> None:
    from codegraph_ad.methods.winclip import harmonic_patch_scores, window_index

    idx = window_index((3, 4), 2)
    assert idx.shape == (6, 4)
    assert idx[0].tolist() == [0, 1, 4, 5] and idx[-1].tolist() == [6, 7, 10, 11]
    scores = torch.rand(2, 6, generator=torch.Generator().manual_seed(0)) + 0.1
    out = harmonic_patch_scores(scores, idx, 12)
    for b in range(2):
        for p in range(12):
            covering = [scores[b, w] for w in range(6) if p in idx[w].tolist()]
            expected = len(covering) / sum(1.0 / s for s in covering)
            assert float(out[b, p]) == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="window size"):
        window_index((3, 4), 4)


def test_winclip_shapes_and_range(bundle, toy_run: dict) -> None:
    from codegraph_ad.distill.clip.detector import WinClipDetector
    from codegraph_ad.distill.predict import predict_images

    det = WinClipDetector(bundle, "object", WinClipConfig(scales=(2, 3), window_batch=64))
    pred = det.predict(load_image_rgb(toy_run["paths"][5]))
    assert pred.probs.shape == (8, 8)
    assert 0.0 <= float(pred.probs.min()) <= float(pred.probs.max()) <= 1.0
    res = predict_images(det, toy_run["paths"][:3], None, progress=False)
    assert res.patch_scores.shape == (3, 64) and np.all((res.scores >= 0) & (res.scores <= 1))


@pytest.mark.parametrize("kind", ["aprilgan", "anomalyclip"])
def test_text_models_train_save_load_predict(kind: str, bundle, clip_config: ClipConfig, toy_run: dict,
                                             tmp_path: Path) -> None:
    from codegraph_ad.distill.clip.detector import TextDetector
    from codegraph_ad.distill.clip.train import train_text_model
    from codegraph_ad.distill.model_file import load_model
    from codegraph_ad.distill.predict import predict_images

    cfg = TextModelConfig(kind=kind, clip=clip_config, n_ctx=4, temperature=10.0,
                          train=TrainConfig(epochs=12, lr=1e-2, batch_images=4))
    det, rep = train_text_model(toy_run["run"], tmp_path / "m.pt", cfg, pseudo=PseudoMaskConfig(scope="batch"),
                                progress=False, bundle=bundle)
    assert rep.history[-1] < rep.history[0]
    saved = load_model(tmp_path / "m.pt")
    assert saved.kind == kind
    if kind == "anomalyclip":
        assert set(saved.state_dict) == {"ctx"}  # only the learned context is stored
    again = TextDetector.from_model_file(saved, bundle=bundle)
    rgb = load_image_rgb(toy_run["paths"][6])
    a, b = det.predict(rgb), again.predict(rgb)
    assert a.probs.shape == (8, 8)
    torch.testing.assert_close(a.probs, b.probs)
    res = predict_images(tmp_path / "m.pt", toy_run["category"] / "test", tmp_path / "pred", progress=False)
    assert res.patch_scores.shape == (8, 64)
    assert float(res.patch_scores.min()) >= 0.0 and float(res.patch_scores.max()) <= 1.0
    assert (tmp_path / "pred" / "run.json").is_file()
    # real masks work the same way
    _, rep_real = train_text_model(toy_run["run"], None, cfg, masks=toy_run["category"], progress=False, bundle=bundle)
    assert rep_real.source["kind"] == "masks" and rep_real.history[-1] < rep_real.history[0]


def test_cli_text_model_and_winclip(tiny_clip_checkpoint: Path, toy_run: dict, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from codegraph_ad.errors import InputError

    from .test_pseudomask_run import distill_cli

    clip_args = ["--clip-arch", TINY_ARCH, "--clip-image-size", "64", "--threads", "1", "--quiet"]
    model = tmp_path / "prompts.pt"
    with pytest.raises(InputError, match="clip-checkpoint"):
        distill_cli(["distill", str(toy_run["run"]), "--out", str(model), "--model", "anomalyclip", *clip_args])
    assert distill_cli(["distill", str(toy_run["run"]), "--out", str(model), "--model", "anomalyclip", "--epochs", "2",
                        "--clip-checkpoint", str(tiny_clip_checkpoint), *clip_args]) == 0
    assert distill_cli(["predict", str(model), str(toy_run["category"] / "test"), "--out", str(tmp_path / "p"),
                        "--no-overlays", "--quiet"]) == 0
    assert len(list((tmp_path / "p" / "maps").glob("*.npy"))) == 8
    assert distill_cli(["winclip", str(toy_run["paths"][0]), "--out", str(tmp_path / "w"), "--scales", "2",
                        "--clip-checkpoint", str(tiny_clip_checkpoint), "--object", "bottle", *clip_args]) == 0
    assert (tmp_path / "w" / "maps" / "000.npy").is_file() and (tmp_path / "w" / "overlays" / "000.png").is_file()
    assert "1 images scored" in capsys.readouterr().out
