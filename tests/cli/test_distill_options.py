"""The distill commands' generated options: old names, shared training options, --config."""

from __future__ import annotations

import argparse
import json

import pytest

from codegraph_ad.cli import build_parser
from codegraph_ad.config import FeatureConfig, config_to_dict
from codegraph_ad.distill import commands
from codegraph_ad.distill.config import DistillCommandConfig, TextModelConfig
from codegraph_ad.errors import ConfigError, InputError
from codegraph_ad.options import add_config_options, config_from_args


def _parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def _distill(*argv: str) -> DistillCommandConfig:
    return config_from_args(_parse("distill", "run", "--out", "m.pt", *argv))


def test_distill_keeps_its_old_option_names():
    job = _distill("--q", "0.9", "--beta", "0.05", "--scope", "image", "--backbone", "dinov2_vitb14",
                   "--checkpoint", "w.pt", "--image-size", "224", "--layers", "6,12", "--final-norm",
                   "--batch-size", "2", "--degrees", "1", "--hidden", "16", "--epochs", "5", "--lr", "0.01",
                   "--seed", "3", "--clip-arch", "ViT-B-16", "--clip-checkpoint", "c.pt", "--clip-image-size", "224")
    assert (job.pseudo.q, job.pseudo.beta, job.pseudo.scope, job.pseudo.seed) == (0.9, 0.05, "image", 0)
    f = job.head.features
    assert (f.backbone, f.checkpoint, f.image_size, f.layers, f.final_norm, f.batch_size) == \
        ("dinov2_vitb14", "w.pt", 224, (6, 12), True, 2)
    assert (job.head.head.degrees, job.head.head.hidden) == ((1,), 16)
    assert (job.head.train.epochs, job.head.train.lr, job.head.train.seed) == (5, 0.01, 3)
    c = job.text.clip
    assert (c.arch, c.checkpoint, c.image_size, c.layers) == ("ViT-B-16", "c.pt", 224, (6, 12))


def test_training_options_and_layers_set_the_chosen_model():
    text = TextModelConfig()
    default = _distill("--model", "aprilgan").trained()
    assert default.kind == "aprilgan" and default.train == text.train and default.clip.layers is None
    assert _distill().trained().train.epochs == 60  # the head's own default
    job = _distill("--model", "anomalyclip", "--epochs", "5", "--seed", "2", "--layers", "6,12")
    model = job.trained()
    assert model.kind == "anomalyclip" and (model.train.epochs, model.train.seed) == (5, 2)
    assert model.clip.layers == (6, 12)
    both = _distill("--model", "anomalyclip", "--epochs", "5", "--text-epochs", "7", "--clip-layers", "24")
    assert (both.head.train.epochs, both.trained().train.epochs, both.trained().clip.layers) == (5, 7, (24,))


def test_distill_defaults_come_from_the_run_then_the_config_file_then_options(tmp_path, monkeypatch):
    run_features = FeatureConfig(backbone="dinov2_vitb14", image_size=224, layers=(6, 12))
    monkeypatch.setattr(commands, "_run_features", lambda run_dir: run_features)
    argv = ("distill", "run", "--out", "m.pt")
    assert commands.distill_config_from_args(_parse(*argv)).head.features == run_features
    saved = config_to_dict(DistillCommandConfig())
    saved["head"]["features"] = config_to_dict(run_features) | {"image_size": 112}
    saved["head"]["head"]["hidden"] = 32
    path = tmp_path / "job.json"
    path.write_text(json.dumps(saved))
    job = commands.distill_config_from_args(_parse(*argv, "--config", str(path), "--hidden", "8"))
    assert (job.head.features.image_size, job.head.head.hidden) == (112, 8)
    path.write_text(json.dumps({"head": {"head": {"hiden": 8}}}))
    with pytest.raises(ConfigError, match="head.head.hiden"):
        commands.distill_config_from_args(_parse(*argv, "--config", str(path)))


def test_pseudo_masks_are_validated():
    with pytest.raises(ConfigError, match="q must be in"):
        commands.pseudo_from_args(_parse("pseudomask", "run", "--out", "pm", "--q", "1.5"))
    with pytest.raises(ConfigError, match="max_components"):
        commands.distill_config_from_args(_parse("distill", "run", "--out", "m.pt", "--model", "aprilgan",
                                                 "--pseudo-max-components", "0"))
    for argv in (["--scope", "everything"], ["--hidden", "x"], ["--model", "mlp"]):
        with pytest.raises(SystemExit):
            _parse("distill", "run", "--out", "m.pt", *argv)


def test_pseudomask_replays_a_summary_file(tmp_path):
    path = tmp_path / "pseudomasks.json"
    path.write_text(json.dumps({"run_dir": "run", "config": {"q": 0.9, "beta": 0.05, "scope": "image"}}))
    c = commands.pseudo_from_args(_parse("pseudomask", "run", "--out", "pm", "--config", str(path), "--beta", "0.02"))
    assert (c.q, c.beta, c.scope) == (0.9, 0.02, "image")


def test_winclip_options_and_its_required_checkpoint(tmp_path):
    a = _parse("winclip", "img", "--out", "o", "--object", "bottle", "--scales", "2", "--clip-arch", "ViT-B-16",
               "--clip-image-size", "240", "--stride", "2")
    c = config_from_args(a)
    assert (c.winclip.object_name, c.winclip.scales, c.winclip.stride) == ("bottle", (2,), 2)
    assert (c.clip.arch, c.clip.image_size, c.clip.checkpoint) == ("ViT-B-16", 240, None)
    with pytest.raises(InputError, match="--clip-checkpoint"):
        commands.cmd_winclip(a)
    with pytest.raises(ConfigError, match="stride"):
        config_from_args(_parse("winclip", "img", "--out", "o", "--stride", "0"))


def test_links_must_name_fields_with_options():
    with pytest.raises(TypeError, match="text.train.epoch"):
        add_config_options(argparse.ArgumentParser(), DistillCommandConfig, prefixes=commands.DISTILL_PREFIXES,
                           links={"head.train.epochs": ("text.train.epoch",)})
