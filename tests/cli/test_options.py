"""options.py: every configuration field has a typed, documented option that sets it."""

from __future__ import annotations

import argparse
import json
import typing
from dataclasses import fields, is_dataclass

import pytest

from codegraph_ad.cli import build_parser
from codegraph_ad.config import RunConfig, config_to_dict
from codegraph_ad.distill import commands as distill_commands
from codegraph_ad.distill.config import DistillCommandConfig, PseudoMaskConfig, WinClipCommandConfig
from codegraph_ad.errors import ConfigError
from codegraph_ad.options import add_run_options, config_from_args, walk_fields
from codegraph_ad.registry import BACKBONES, METHODS
from codegraph_ad.volumes.config import CohortConfig, LesionConfig, VolumeConfig

# Fields whose generic non-default value (below) would be invalid or meaningless.
SPECIAL = {
    "graph.graph_blocks": (9,),
    "graph.graph_degree": 3,  # must be one of the LNAMD degrees
    "features.checkpoint": "weights.pt",
    "percentiles": (1.0, 99.0),
    "sources": ("a.nii.gz", "b.nii.gz"),
    "clip.arch": "ViT-B-16",
    "clip.checkpoint": "clip.pt",
    "clip.layers": (6, 12),
    "object_name": "bottle",
    "engine.ray_address": "auto",
}


def _leaves(cls: type, path: tuple[str, ...] = ()):
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if isinstance(hints[f.name], type) and is_dataclass(hints[f.name]):
            yield from _leaves(hints[f.name], (*path, f.name))
        else:
            yield (*path, f.name), f, hints[f.name]


def _get(obj, path):
    for name in path:
        obj = getattr(obj, name)
    return obj


def _other_value(dotted: str, hint, default):
    """A valid value different from the default, from the field's type alone where possible."""
    for key, value in SPECIAL.items():
        if dotted == key or dotted.endswith("." + key):
            return value
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    inner = args[0] if type(None) in typing.get_args(hint) and len(args) == 1 else hint
    if inner is bool:
        return not default
    if typing.get_origin(inner) is typing.Literal:
        return next(c for c in typing.get_args(inner) if c != default)
    if typing.get_origin(inner) is tuple:
        if typing.get_args(inner)[-1] is not Ellipsis:  # fixed length (ranges): equal ends
            return (default[0],) * len(default)
        return default[:-1] if len(default) > 1 else (*default, default[-1] + 2)
    if inner is float:
        return 0.5 if default is None else default / 2
    if inner is int:
        return 64 if default is None else default + 1
    if dotted.endswith("backbone"):
        names = [n for n in BACKBONES.names() if n != default]
        return names[0] if names else "another_backbone"
    if dotted == "method" or dotted.endswith(".method"):  # a registered batch method
        return next(n for n in METHODS.names() if n != default and n in ("codegraph", "musc"))
    raise AssertionError(f"no test value for {dotted}: {hint}")


def _argv(flag: str, value) -> list[str]:
    if isinstance(value, bool):
        return [flag if value else "--no-" + flag[2:]]
    if isinstance(value, tuple):
        return [flag, ",".join(map(str, value))]
    return [flag, "none" if value is None else str(value)]


def _parser(root=RunConfig, defaults=None):
    p = argparse.ArgumentParser()
    add_run_options(p, root, defaults)
    return p


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _command(root):
    """(parser, argv before the options, extra walk_fields arguments, fields the command sets
    itself, links) of the command of ``root``."""
    if root is CohortConfig:
        from codegraph_ad.volumes.cli import _COHORT_ALIASES

        return (build_parser(), ["make-cohort"], {"prefixes": {LesionConfig: "lesion"}, "aliases": _COHORT_ALIASES},
                (), {})
    if root is PseudoMaskConfig:
        return build_parser(), ["pseudomask", "run"], {}, (), {}
    if root is DistillCommandConfig:
        extra = {"prefixes": distill_commands.DISTILL_PREFIXES, "aliases": distill_commands.PSEUDO_ALIASES}
        return build_parser(), ["distill", "run"], extra, distill_commands.DISTILL_SKIP, distill_commands.DISTILL_LINKS
    if root is WinClipCommandConfig:
        extra = {"prefixes": distill_commands.WINCLIP_PREFIXES, "aliases": distill_commands.WINCLIP_ALIASES}
        return build_parser(), ["winclip", "img"], extra, (), {}
    return _parser(root, root()), [], {}, (), {}


ROOTS = [RunConfig, VolumeConfig, CohortConfig, PseudoMaskConfig, DistillCommandConfig, WinClipCommandConfig]


@pytest.mark.parametrize("root", ROOTS)
def test_every_field_has_an_option_that_sets_it(root):
    defaults = root()
    parser, command, extra, skip, links = _command(root)
    options = {o.dest: o for o in walk_fields(root, **extra)}
    leaves = list(_leaves(root))
    assert sorted(options) == sorted(".".join(p) for p, _, _ in leaves)
    base = _flat(config_to_dict(defaults))
    for path, f, hint in leaves:
        dotted = ".".join(path)
        if dotted in skip:  # set by another option of the command (tested with the command)
            continue
        value = _other_value(dotted, hint, _get(defaults, path))
        assert value != _get(defaults, path), dotted
        followers = links.get(dotted, ())
        for flag in options[dotted].flags:  # the generated name and every alias
            config = config_from_args(parser.parse_args([*command, "--out", "o", *_argv(flag, value)]))
            assert _get(config, path) == value, (flag, value)
            for follower in followers:
                assert _get(config, tuple(follower.split("."))) == value, (flag, follower)
            changed = {k for k, v in _flat(config_to_dict(config)).items() if base[k] != v}
            assert changed == {dotted, *followers}, (flag, changed)


def test_make_cohort_keeps_its_space_separated_ranges_and_repeated_sources():
    a = build_parser().parse_args(["make-cohort", "--out", "o", "--source", "a.nii", "--source", "b.nii",
                                   "--lesion-diameter-mm", "12", "12", "--lesion-contrast", "0.2,0.3"])
    c = config_from_args(a)
    assert c.sources == ("a.nii", "b.nii") and c.lesion.diameter_mm == (12.0, 12.0)
    assert c.lesion.contrast == (0.2, 0.3)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["make-cohort", "--out", "o", "--lesion-contrast", "0.2", "0.3", "0.4"])


@pytest.mark.parametrize("root", ROOTS)
def test_every_field_has_help(root):
    parser, command, extra, skip, _ = _command(root)
    if command:
        parser = parser._subparsers._group_actions[0].choices[command[0]]
    text = parser.format_help()
    for path, f, _ in _leaves(root):
        assert f.metadata.get("help", "").strip(), ".".join(path)
    for o in walk_fields(root, **extra):
        assert o.dest in skip or o.flags[0] in text


def test_old_option_names_still_work():
    p = _parser()
    c = config_from_args(p.parse_args(["--out", "o", "--image-size", "224", "--layers", "3,6", "--rscin",
                                       "--precision", "bf16", "--memory-mb", "512", "--threads", "2",
                                       "--subsets", "2", "--screening", "50", "--seed", "4", "--batch-size", "2",
                                       "--coverage", "0.9", "--final-norm", "--checkpoint", "w.pt",
                                       "--method", "musc", "--backbone", "dinov2_vitb14"]))
    assert (c.features.image_size, c.features.layers, c.features.final_norm, c.features.checkpoint) == \
        (224, (3, 6), True, "w.pt")
    assert c.rscin.enabled and c.engine.precision == "bf16" and c.engine.memory_budget_mb == 512
    assert (c.engine.threads, c.engine.subsets, c.engine.screening_percent, c.engine.seed) == (2, 2, 50.0, 4)
    assert c.graph.target_coverage == 0.9 and c.method == "musc" and c.features.backbone == "dinov2_vitb14"


def test_typed_parsing_rejects_bad_values():
    p = _parser()
    for argv in (["--image-size", "big"], ["--layers", "3,x"], ["--precision", "fp64"],
                 ["--percentile-of-nothing", "1"], ["--rscin-k-list", ""]):
        with pytest.raises(SystemExit):
            p.parse_args(["--out", "o", *argv])
    assert config_from_args(p.parse_args(["--out", "o", "--threads", "none"])).engine.threads is None


def test_q_follows_the_method_and_both_fields_are_explicit():
    p = _parser()
    musc = config_from_args(p.parse_args(["--out", "o", "--method", "musc", "--q", "0.2"]))
    assert musc.msm.q == 0.2 and musc.graph.final_q == RunConfig().graph.final_q
    cg = config_from_args(p.parse_args(["--out", "o", "--q", "0.1"]))
    assert cg.graph.final_q == 0.1 and cg.msm.q == RunConfig().msm.q
    both = config_from_args(p.parse_args(["--out", "o", "--msm-q", "0.2", "--final-q", "0.1"]))
    assert (both.msm.q, both.graph.final_q) == (0.2, 0.1)
    with pytest.raises(ConfigError, match="--final-q 0.1 disagree"):
        config_from_args(p.parse_args(["--out", "o", "--q", "0.2", "--final-q", "0.1"]))


def test_deprecated_graph_layers_equal_graph_blocks():
    p = _parser()
    new = config_from_args(p.parse_args(["--out", "o", "--graph-blocks", "9,12"]))
    with pytest.warns(DeprecationWarning, match="--graph-blocks"):
        old = config_from_args(p.parse_args(["--out", "o", "--graph-layers", "2,3"]))
    assert old == new and new.graph.graph_blocks == (9, 12)
    with pytest.warns(DeprecationWarning):  # indices into the --layers given
        assert config_from_args(p.parse_args(["--out", "o", "--layers", "6,12", "--graph-layers", "1"])
                                ).graph.graph_blocks == (12,)
    with pytest.warns(DeprecationWarning), pytest.raises(ConfigError, match="below 4"):
        config_from_args(p.parse_args(["--out", "o", "--graph-layers", "4"]))


def test_config_file_then_command_line_overrides(tmp_path):
    saved = RunConfig(method="musc")
    saved = config_to_dict(saved)
    saved["msm"]["q"] = 0.2
    saved["features"]["image_size"] = 224
    p = _parser()
    for content in (saved, {"config": saved, "names": []}):  # config_to_dict output, or a run.json
        path = tmp_path / "c.json"
        path.write_text(json.dumps(content))
        c = config_from_args(p.parse_args(["--out", "o", "--config", str(path), "--image-size", "112"]))
        assert (c.method, c.msm.q, c.features.image_size) == ("musc", 0.2, 112)
        assert c.graph == RunConfig().graph
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"config": {"graph": {"graph_layers": [2]}}}))
    assert config_from_args(p.parse_args(["--out", "o", "--config", str(old)])).graph.graph_blocks == (9,)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"graph": {"kapa": 2}}))
    with pytest.raises(ConfigError, match="graph.kapa"):
        config_from_args(p.parse_args(["--out", "o", "--config", str(bad)]))
    bad.write_text("{")
    with pytest.raises(ConfigError, match="bad.json"):
        config_from_args(p.parse_args(["--out", "o", "--config", str(bad)]))


def test_volume_config_file_keeps_volume_defaults(tmp_path):
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"size": 112, "run": {"graph": {"kappa": 2.0}}}))
    c = config_from_args(_parser(VolumeConfig, VolumeConfig()).parse_args(["--out", "o", "--config", str(path)]))
    assert c.size == 112 and c.run.graph.kappa == 2.0
    assert c.run.graph.alpha == VolumeConfig().run.graph.alpha and c.run.lnamd.degrees == (1,)


def test_method_choices_come_from_the_registry():
    from codegraph_ad.registry import METHODS

    p = _parser()
    with pytest.raises(SystemExit):
        p.parse_args(["--out", "o", "--method", "my_plugin_method"])
    METHODS.register("my_plugin_method", object)
    try:
        assert config_from_args(p.parse_args(["--out", "o", "--method", "my_plugin_method"])).method == \
            "my_plugin_method"
        assert "my_plugin_method" in p.format_help()
        with pytest.raises(ConfigError, match="--msm-q or --final-q"):
            config_from_args(p.parse_args(["--out", "o", "--method", "my_plugin_method", "--q", "0.2"]))
    finally:
        METHODS.unregister("my_plugin_method")
