"""analyze, report, make-synca, make-consistad: their options are generated from their configs
(AnalysisConfig, ReportConfig, SynCAConfig, ConsistADConfig), and the names they had before
still parse to the same configuration."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import pytest

from codegraph_ad.analysis.cli import ANALYZE_ALIASES
from codegraph_ad.analysis.config import AnalysisConfig
from codegraph_ad.cli import build_parser
from codegraph_ad.config import config_to_dict, documented
from codegraph_ad.datasets.cli import CONSISTAD_NAMES, CONSISTAD_PREFIXES
from codegraph_ad.datasets.consistad import ConsistADConfig
from codegraph_ad.datasets.manta import MantaConfig
from codegraph_ad.datasets.synca import SynCAConfig
from codegraph_ad.errors import ConfigError
from codegraph_ad.options import add_config_options, config_from_args, walk_fields
from codegraph_ad.report.cli import REPORT_ALIASES
from codegraph_ad.report.html import ReportConfig
from tests.cli.test_options import _argv, _flat, _get, _leaves, _other_value

# Fields whose generic test value (test_options._other_value) would be missing or invalid.
SPECIAL = {"repeated_images": ("good/000", "crack/*"), "prefix": "copy"}

# root -> (argv before the options: the command and its required arguments, walk_fields extras)
COMMANDS = {
    AnalysisConfig: (["analyze", "run"], {"aliases": ANALYZE_ALIASES}),
    ReportConfig: (["report", "run"], {"aliases": REPORT_ALIASES}),
    SynCAConfig: (["make-synca", "category", "--out", "o"], {}),
    ConsistADConfig: (["make-consistad", "--mvtec", "m", "--loco", "l", "--manta", "n", "--out", "o"],
                      {"prefixes": CONSISTAD_PREFIXES, "names": CONSISTAD_NAMES}),
}
ROOTS = list(COMMANDS)


def _value(dotted: str, hint, default):
    return SPECIAL[dotted] if dotted in SPECIAL else _other_value(dotted, hint, default)


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


@pytest.mark.parametrize("root", ROOTS, ids=lambda r: r.__name__)
def test_every_field_has_an_option_that_sets_it(root):
    command, extra = COMMANDS[root]
    defaults = root()
    options = {o.dest: o for o in walk_fields(root, **extra)}
    leaves = list(_leaves(root))
    assert sorted(options) == sorted(".".join(p) for p, _, _ in leaves)
    base = _flat(config_to_dict(defaults))
    assert config_from_args(_parse(command)) == defaults  # no option: the dataclass defaults
    for path, _, hint in leaves:
        dotted = ".".join(path)
        value = _value(dotted, hint, _get(defaults, path))
        assert value != _get(defaults, path), dotted
        for flag in options[dotted].flags:  # the generated name and every alias
            config = config_from_args(_parse([*command, *_argv(flag, value)]))
            assert _get(config, path) == value, (flag, value)
            changed = {k for k, v in _flat(config_to_dict(config)).items() if base[k] != v}
            assert changed == {dotted}, (flag, changed)


@pytest.mark.parametrize("root", ROOTS, ids=lambda r: r.__name__)
def test_every_field_has_help(root):
    command, extra = COMMANDS[root]
    text = build_parser()._subparsers._group_actions[0].choices[command[0]].format_help()
    for path, f, _ in _leaves(root):
        assert f.metadata.get("help", "").strip(), ".".join(path)
    for o in walk_fields(root, **extra):
        assert all(flag in text for flag in o.flags), o.flags
    assert "--config FILE" in text


def test_analyze_old_option_names_parse_to_the_same_config():
    old = ["analyze", "--repeated", "crack/000", "run", "--consistent-percentile", "70", "--mask-fraction", "0.25",
           "--hill-references", "8", "--hill-k-max", "50", "--seed", "3", "--repeated", "crack/*_copy"]
    a = _parse(old)
    assert str(a.run_dir) == "run"  # --repeated takes one value: the positional stays apart
    assert config_from_args(a) == AnalysisConfig(consistent_percentile=70.0, mask_fraction=0.25, hill_references=8,
                                                 hill_k_max=50, seed=3, repeated_images=("crack/000", "crack/*_copy"))
    new = _parse(["analyze", "run", "--repeated-images", "crack/000,crack/*_copy"])
    assert config_from_args(new).repeated_images == ("crack/000", "crack/*_copy")
    assert config_from_args(_parse(["analyze", "run", "--fit-rank-max", "none"])).fit_rank_max is None


def test_report_old_option_names_parse_to_the_same_config():
    a = _parse(["report", "run", "--thumb-size", "64", "--detail-size", "200", "--inline-max", "3"])
    assert config_from_args(a) == ReportConfig(thumb_size=64, detail_size=200, inline_detail_max_images=3)


def test_make_synca_keeps_copies_source_seed_as_arguments():
    a = _parse(["make-synca", "cat", "--out", "o", "--copies", "3", "--source", "hole/000", "--seed", "2",
                "--all-categories", "--overwrite"])
    assert (a.copies, a.source, a.seed, a.all_categories, a.overwrite) == (3, "hole/000", 2, True, True)
    assert config_from_args(a) == SynCAConfig()
    b = _parse(["make-synca", "cat", "--out", "o"])
    assert (b.copies, b.source, b.seed) == (None, None, 0)  # None: copies_fraction of the test images
    c = config_from_args(_parse(["make-synca", "cat", "--out", "o", "--copies-fraction", "0.3", "--copies", "4"]))
    assert c.copies_fraction == 0.3


def test_make_consistad_roots_and_classes_are_apart():
    a = _parse(["make-consistad", "--mvtec", "m", "--loco", "l", "--manta", "n", "--out", "o", "--seed", "5",
                "--manta-classes", "capsule", "--mvtec-classes", "pill,cable", "--manta-axis", "vertical"])
    assert (str(a.mvtec_root), str(a.loco_root), str(a.manta_root), a.seed) == ("m", "l", "n", 5)
    c = config_from_args(a)
    assert c == ConsistADConfig(mvtec=("pill", "cable"), manta=("capsule",), manta_views=MantaConfig(axis="vertical"))
    with pytest.raises(SystemExit):
        _parse(["make-consistad", "--mvtec", "m", "--loco", "l", "--manta", "n", "--out", "o", "--manta-axis", "up"])


def test_config_files_the_commands_write_are_read_back(tmp_path):
    analysis = tmp_path / "analysis.json"  # what analyze writes: the config under "analysis_config"
    analysis.write_text(json.dumps({"layers": [], "config": {"seed": 9},
                                    "analysis_config": config_to_dict(AnalysisConfig(hill_k_max=40, seed=2))}))
    c = config_from_args(_parse(["analyze", "run", "--config", str(analysis), "--seed", "7"]))
    assert (c.hill_k_max, c.seed) == (40, 7)
    manifest = tmp_path / "synca.json"  # a SynCA build's manifest: the config under "config"
    manifest.write_text(json.dumps({"kind": "synca", "seed": 1, "config": config_to_dict(SynCAConfig(prefix="x"))}))
    c = config_from_args(_parse(["make-synca", "cat", "--out", "o", "--config", str(manifest)]))
    assert c == SynCAConfig(prefix="x")
    plain = tmp_path / "consistad.json"
    plain.write_text(json.dumps({"manta_normal": 10, "manta_views": {"n_views": 3}}))
    c = config_from_args(_parse(["make-consistad", "--mvtec", "m", "--loco", "l", "--manta", "n", "--out", "o",
                                 "--config", str(plain), "--manta-normal", "12"]))
    assert (c.manta_normal, c.manta_views.n_views, c.manta) == (12, 3, ConsistADConfig().manta)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"thumb_sise": 3}))
    with pytest.raises(ConfigError, match="thumb_sise"):
        config_from_args(_parse(["report", "run", "--config", str(bad)]))


@dataclass(frozen=True)
class _Tiny:
    root: str = documented("x", "a field named like the command's argument")
    items: tuple[int, ...] = documented((), "a list")
    pair: tuple[int, int] = documented((1, 2), "two numbers")


def test_a_field_and_a_command_argument_may_not_share_a_dest():
    p = argparse.ArgumentParser()
    p.add_argument("--root")
    with pytest.raises(TypeError, match="root"):
        add_config_options(p, _Tiny)
    p = argparse.ArgumentParser()
    p.add_argument("--root", dest="root_dir")
    add_config_options(p, _Tiny, names={"root": "--root-name"})
    a = p.parse_args(["--root", "r", "--root-name", "n"])
    assert a.root_dir == "r" and config_from_args(a).root == "n"


def test_repeatable_options_add_up_and_only_variable_tuples_repeat():
    p = argparse.ArgumentParser()
    p.add_argument("pos")
    add_config_options(p, _Tiny, repeatable=("items",))
    a = p.parse_args(["--items", "1,2", "pos", "--items", "3"])
    assert a.pos == "pos" and config_from_args(a).items == (1, 2, 3)
    with pytest.raises(SystemExit):
        p.parse_args(["pos", "--items", "x"])
    for bad in ("pair", "root", "nope"):
        with pytest.raises(TypeError, match=bad):
            add_config_options(argparse.ArgumentParser(), _Tiny, repeatable=(bad,))


def test_the_commands_pass_their_config_on(monkeypatch):
    """The parsed configuration reaches the builders (not only the namespace)."""
    from codegraph_ad.cli import main
    from codegraph_ad.datasets import consistad, synca

    seen = {}

    def fake_synca(category_dir, out, n_copies, source, seed, config, overwrite=False):
        seen["synca"] = (n_copies, source, seed, config, overwrite)
        return synca.SynCAResult(out, source, 1, [], 0.0)

    def fake_consistad(mvtec, loco, manta, out, seed, config, overwrite=False):
        seen["consistad"] = (str(mvtec), str(loco), str(manta), seed, config)
        return consistad.ConsistADResult(out, {}, 0.0)

    monkeypatch.setattr(synca, "build_synca", fake_synca)
    monkeypatch.setattr(consistad, "build_consistad", fake_consistad)
    assert main(["make-synca", "cat", "--out", "o", "--copies", "2", "--source", "hole/000", "--prefix", "dup",
                 "--overwrite"]) == 0
    assert seen["synca"] == (2, "hole/000", 0, SynCAConfig(prefix="dup"), True)
    assert main(["make-consistad", "--mvtec", "m", "--loco", "l", "--manta", "n", "--out", "o",
                 "--manta-n-views", "4"]) == 0
    assert seen["consistad"] == ("m", "l", "n", 0, ConsistADConfig(manta_views=MantaConfig(n_views=4)))
