"""Patch head, training loop and model files, on synthetic tokens (no backbone)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from codegraph_ad.distill.config import HeadConfig, TrainConfig
from codegraph_ad.distill.head import PatchHead, head_inputs
from codegraph_ad.distill.model_file import ModelFile, load_model, save_model
from codegraph_ad.distill.train import fit_model
from codegraph_ad.errors import InputError
from codegraph_ad.features.lnamd import lnamd


def toy_tokens(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 2 layers, 16 patches, 8) tokens where anomalous patches carry an offset; (N, 16) targets."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(n, 2, 16, 8, generator=g)
    targets = (torch.rand(n, 16, generator=g) < 0.15).float()
    tokens[:, :, :, 0] += 4.0 * targets[:, None]
    return tokens, targets


def test_head_inputs_concatenate_lnamd_per_layer_and_degree() -> None:
    tokens, _ = toy_tokens()
    x = head_inputs(tokens, (4, 4), (1, 3))
    assert x.shape == (6, 16, 2 * 2 * 8)
    torch.testing.assert_close(x[..., 8:16], lnamd(tokens[:, 0], (4, 4), 3))
    torch.testing.assert_close(x[..., 16:24], lnamd(tokens[:, 1], (4, 4), 1))
    with pytest.raises(ValueError, match="B, L, M, C"):
        head_inputs(tokens[0], (4, 4), (1,))


def _train(seed: int) -> tuple[PatchHead, list[float]]:
    tokens, targets = toy_tokens()
    x = head_inputs(tokens, (4, 4), (1,))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        head = PatchHead(x.shape[-1], HeadConfig(hidden=16, dropout=0.0))
        hist = fit_model(head, x, targets, TrainConfig(epochs=25, lr=1e-2, batch_images=3, seed=seed), progress=False)
    return head, hist


def test_loss_falls_and_training_is_seeded() -> None:
    head, hist = _train(0)
    assert hist[-1] < 0.5 * hist[0]
    head2, hist2 = _train(0)
    assert hist == hist2
    for a, b in zip(head.state_dict().values(), head2.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    _, hist3 = _train(1)
    assert hist3 != hist


def test_linear_head_and_output_range() -> None:
    head = PatchHead(12, HeadConfig(hidden=0))
    with torch.no_grad():
        p = head.eval()(torch.randn(2, 5, 12))
    assert p.shape == (2, 5) and float(p.min()) >= 0.0 and float(p.max()) <= 1.0
    with pytest.raises(ValueError, match="dimension"):
        PatchHead(0)


def test_fit_model_checks_its_inputs() -> None:
    head = PatchHead(4, HeadConfig(hidden=0))
    with pytest.raises(ValueError, match="same"):
        fit_model(head, torch.zeros(3, 2, 4), torch.zeros(2, 2), progress=False)
    with pytest.raises(ValueError, match="epochs"):
        fit_model(head, torch.zeros(3, 2, 4), torch.zeros(3, 2), TrainConfig(epochs=0), progress=False)


def test_model_file_round_trip_and_bad_files(tmp_path: Path) -> None:
    head, _ = _train(0)
    path = save_model(tmp_path / "m.pt", ModelFile("patch_head", {"in_dim": 16, "note": "x"}, head.state_dict()))
    back = load_model(path)
    assert back.kind == "patch_head" and back.config == {"in_dim": 16, "note": "x"}
    fresh = PatchHead(16, HeadConfig(hidden=16, dropout=0.0))
    fresh.load_state_dict(back.state_dict)
    x = torch.randn(1, 16, 16)
    torch.testing.assert_close(fresh.eval()(x), head.eval()(x))
    assert not list(tmp_path.glob(".*tmp"))
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(InputError, match="junk.pt"):
        load_model(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="marker"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(InputError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
