"""Command-line options generated from the configuration dataclasses (one option per field).

The dataclasses in config.py stay the one place that names, documents and defaults every
tunable; this module turns a config tree (``RunConfig``, or ``VolumeConfig`` which holds
one) into argparse options, and a parsed namespace back into a config. Every generated
option has ``default=SUPPRESS``, so the namespace holds exactly what the user typed: those
values override the ``--config`` file, or the dataclass defaults when there is none.

Option names: the field name with dashes; the fields of the small sections in
``SECTION_PREFIX`` carry the section's name (``--lnamd-degrees``, ``--msm-q``); a field whose
name alone reads badly gets its own flag (``PRIMARY_NAMES``: the decision's ``--decision-rule``);
the older short names stay as aliases (``ALIASES``). Two options are not fields: ``--q`` (the share q
the chosen method scores with: MuSc's ``msm.q``, CoDeGraph's ``graph.final_q``) and the
deprecated ``--graph-layers`` (0-based indices into ``--layers``, now ``--graph-blocks``).
A command whose tree holds one class twice (distill: the head's and the CLIP model's
``TrainConfig``) prefixes its sections by path and may link a field to others that follow
its command-line value (``--epochs`` trains whichever model is chosen). A field whose name a
command's own argument holds gets another flag (``names``: make-consistad's ``--mvtec`` is a
root folder, the ``mvtec`` classes are ``--mvtec-classes``), and a field and an argument that
would share a namespace dest are refused when the parser is built.
"""

from __future__ import annotations

import argparse
import json
import types
import typing
import warnings
from collections.abc import Callable, Iterator
from dataclasses import Field, dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal, Union

from codegraph_ad.config import (
    DecisionConfig,
    EngineConfig,
    FeatureConfig,
    GraphConfig,
    LNAMDConfig,
    MSMConfig,
    RsCINConfig,
    RunConfig,
    config_update,
    graph_layer_indices,
    upgrade_run_dict,
)
from codegraph_ad.errors import ConfigError
from codegraph_ad.registry import BACKBONES, METHODS, Registry

# Sections whose fields would read badly without their name (--q, --enabled, --degrees).
SECTION_PREFIX: dict[type, str] = {LNAMDConfig: "lnamd", MSMConfig: "msm", RsCINConfig: "rscin"}
# Names the CLI had before the options were generated, kept working beside the generated ones.
ALIASES: dict[tuple[type, str], tuple[str, ...]] = {
    (RsCINConfig, "enabled"): ("--rscin",),
    (EngineConfig, "memory_budget_mb"): ("--memory-mb",),
    (EngineConfig, "screening_percent"): ("--screening",),
    (GraphConfig, "target_coverage"): ("--coverage",),
}
# Fields whose own name reads badly alone: their primary flag (the decision's --rule).
PRIMARY_NAMES: dict[tuple[type, str], str] = {(DecisionConfig, "rule"): "--decision-rule",
                                               (EngineConfig, "backend"): "--engine"}
# Fields whose valid values are the names of an open registry rather than a fixed Literal.
REGISTRY_CHOICES: dict[tuple[type, str], Registry] = {(RunConfig, "method"): METHODS,
                                                       (FeatureConfig, "backbone"): BACKBONES}
SPEC_DEST = "_config_spec"  # namespace attribute holding the ConfigSpec of the parser


@dataclass(frozen=True)
class ConfigOption:
    """One leaf field of a config tree and the option that sets it."""

    path: tuple[str, ...]  # field names from the root, e.g. ("graph", "final_q")
    owner: type  # the dataclass that declares the field
    field: Field
    hint: Any  # resolved type annotation
    flags: tuple[str, ...]  # primary flag first

    @property
    def dest(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class ConfigSpec:
    """What ``config_from_args`` needs: the root class, its defaults and its options."""

    root: type
    defaults: Any
    options: tuple[ConfigOption, ...]
    run_path: tuple[str, ...] | None  # where the RunConfig sits in the tree (for --q, --graph-layers)
    links: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (dotted field, dotted fields that follow it)
    config_key: str = "config"  # where a result file (run.json, analysis.json) holds the configuration


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def walk_fields(root: type, path: tuple[str, ...] = (), prefix: str = "",
                prefixes: dict[type | str, str] | None = None,
                aliases: dict[tuple[type, str], tuple[str, ...]] | None = None,
                names: dict[str, str] | None = None) -> Iterator[ConfigOption]:
    """Every leaf field of the dataclass tree under ``root``, depth first, in declaration order.

    prefixes / aliases: added to SECTION_PREFIX / ALIASES for the config trees of other
    areas (volumes, distill), which this bottom module cannot import. A prefix is keyed by
    the section's class, or by its dotted path where one class appears twice in a tree
    (``"text.train"``); the path wins, and ``""`` there gives a section no prefix.
    names: dotted field -> primary flag in place of the generated one, for a field whose
        name a command's own argument already holds (make-consistad's ``--mvtec`` is the
        MVTec root; the ``mvtec`` field, the classes taken from it, is ``--mvtec-classes``).
    """
    prefixes = {**SECTION_PREFIX, **(prefixes or {})}
    aliases = {**ALIASES, **(aliases or {})}
    names = names or {}
    hints = _hints(root)
    for f in fields(root):
        hint = hints[f.name]
        dotted = ".".join((*path, f.name))
        if isinstance(hint, type) and is_dataclass(hint):
            sub = prefixes[dotted] if dotted in prefixes else prefixes.get(hint)
            yield from walk_fields(hint, (*path, f.name), f"{prefix}{sub}-" if sub else prefix, prefixes, aliases,
                                   names)
            continue
        primary = names.get(dotted) or PRIMARY_NAMES.get((root, f.name)) or "--" + prefix + f.name.replace("_", "-")
        yield ConfigOption((*path, f.name), root, f, hint, (primary, *aliases.get((root, f.name), ())))


def _find_run_path(root: type, path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    if root is RunConfig:
        return path
    hints = _hints(root)
    for f in fields(root):
        hint = hints[f.name]
        if isinstance(hint, type) and is_dataclass(hint):
            found = _find_run_path(hint, (*path, f.name))
            if found is not None:
                return found
    return None


# --- typed parsing -------------------------------------------------------------------------

def _split_optional(hint: Any) -> tuple[Any, bool]:
    """(inner type, whether None is allowed) of ``X | None``."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def _scalar_parser(kind: type, name: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: expected {kind.__name__}, got {text!r}") from None

    return parse


def value_parser(hint: Any, name: str) -> Callable[[str], Any]:
    """str -> value for one annotation: tuples from comma lists, ``none`` for Optional."""
    inner, optional = _split_optional(hint)
    if typing.get_origin(inner) is Literal:
        kinds = {type(a) for a in typing.get_args(inner)}
        base = _scalar_parser(kinds.pop() if len(kinds) == 1 else str, name)
    elif typing.get_origin(inner) is tuple:
        args = typing.get_args(inner)
        variadic = len(args) == 2 and args[1] is Ellipsis
        item = _scalar_parser(args[0], name)

        def base(text: str) -> tuple:
            values = tuple(item(x.strip()) for x in text.split(",") if x.strip())
            if variadic and not values:
                raise argparse.ArgumentTypeError(f"{name}: expected a comma-separated list, got {text!r}")
            if not variadic and len(values) != len(args):
                raise argparse.ArgumentTypeError(f"{name}: expected {len(args)} comma-separated values, got {text!r}")
            return values
    elif inner in (int, float, str):
        base = _scalar_parser(inner, name)
    else:
        raise TypeError(f"no command-line parser for {name}: {hint!r}")  # a new field type: add it here
    if not optional:
        return base
    return lambda text: None if text.strip().lower() == "none" else base(text)


class _RegistryChoices:
    """Choices read from a registry when argparse first checks or shows them.

    Reading the names imports the built-in backbones and methods (torch), so it is put off
    until an option is used or help is printed. While the registry is empty (its entries not
    registered yet), the field's Literal values stand in, and without those every name
    passes here and the registry's own lookup reports a bad one.
    """

    def __init__(self, registry: Registry, fallback: tuple[str, ...] = ()) -> None:
        self.registry = registry
        self.fallback = fallback

    def names(self) -> list[str]:
        return self.registry.names() or list(self.fallback)

    def __contains__(self, value: object) -> bool:
        names = self.names()
        return not names or value in names

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


class _RegistryHelp(str):
    """Help text that lists the registry's names when argparse formats it (help only)."""

    choices: _RegistryChoices

    def __new__(cls, text: str, choices: _RegistryChoices) -> "_RegistryHelp":
        obj = super().__new__(cls, text)
        obj.choices = choices
        return obj

    def __mod__(self, params: Any) -> str:
        names = self.choices.names()
        return str.__mod__(self, params) + (f"; one of: {', '.join(names)}" if names else "")


def _format_default(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value else "empty"
    return str(value)


def _lookup(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


class _TokenList(argparse.Action):
    """A tuple option given as one comma list or as several tokens; repeats extend a
    variable-length tuple (``--source a --source b``)."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001 - argparse's signature
        try:
            value = self.parse(values if isinstance(values, str) else ",".join(values))
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None
        inner, _ = _split_optional(self.hint)
        earlier = getattr(namespace, self.dest, None)
        if earlier is not None and typing.get_args(inner)[-1] is Ellipsis:
            value = (*earlier, *value)
        setattr(namespace, self.dest, value)


def _add_option(group: argparse._ActionsContainer, opt: ConfigOption, defaults: Any,
                token_lists: bool = False, note: str = "", repeatable: bool = False) -> None:
    text = opt.field.metadata.get("help")
    if not text:
        raise TypeError(f"{opt.owner.__name__}.{opt.field.name} has no help (config.documented)")
    default = _lookup(defaults, opt.path)
    help_text = f"{text} (default: {_format_default(default)}){note}".replace("%", "%%")
    inner, _ = _split_optional(opt.hint)
    kwargs: dict[str, Any] = {"dest": opt.dest, "default": argparse.SUPPRESS, "help": help_text}
    if inner is bool:
        group.add_argument(*opt.flags, action=argparse.BooleanOptionalAction, **kwargs)
        return
    kwargs["type"] = value_parser(opt.hint, opt.flags[0])
    registry = REGISTRY_CHOICES.get((opt.owner, opt.field.name))
    if registry is not None:
        literal = typing.get_args(inner) if typing.get_origin(inner) is Literal else ()
        choices = _RegistryChoices(registry, literal)
        kwargs.update(choices=choices, metavar="NAME", help=_RegistryHelp(help_text, choices))
    elif typing.get_origin(inner) is Literal:
        kwargs["choices"] = list(typing.get_args(inner))
    else:
        kwargs["metavar"] = _metavar(inner) + ("|none" if inner is not opt.hint else "")
    if token_lists and typing.get_origin(inner) is tuple:
        parse = kwargs.pop("type")  # applied to the joined tokens, not to each token (argparse would)
        kwargs["metavar"] = _metavar(typing.get_args(inner)[0])
        action = group.add_argument(*opt.flags, nargs="+", action=_TokenList, **kwargs)
        action.parse, action.hint = parse, opt.hint  # type: ignore[attr-defined]
        return
    if repeatable:  # one comma list per use, and the uses add up
        parse = kwargs.pop("type")
        action = group.add_argument(*opt.flags, action=_TokenList, **kwargs)
        action.parse, action.hint = parse, opt.hint  # type: ignore[attr-defined]
        return
    group.add_argument(*opt.flags, **kwargs)


def _metavar(inner: Any) -> str:
    if typing.get_origin(inner) is tuple:
        args = typing.get_args(inner)
        item = _metavar(args[0])
        return f"{item},..." if args[-1] is Ellipsis else ",".join([item] * len(args))
    return {int: "INT", float: "X", str: "TEXT"}.get(inner, "VALUE")


def add_config_options(parser: argparse.ArgumentParser, root: type = RunConfig, defaults: Any = None,
                       skip: tuple[str, ...] = (), prefixes: dict[type | str, str] | None = None,
                       aliases: dict[tuple[type, str], tuple[str, ...]] | None = None,
                       token_lists: bool = False, links: dict[str, tuple[str, ...]] | None = None,
                       description: str = "", config_help: str | None = None,
                       names: dict[str, str] | None = None, repeatable: tuple[str, ...] = (),
                       config_key: str = "config") -> ConfigSpec:
    """One option per leaf field of ``root`` (defaults shown from ``defaults``), plus --config.

    skip: dotted field paths that get no option (a command that sets them itself).
    prefixes / aliases: see ``walk_fields``.
    token_lists: tuple fields also take space-separated values (``--range 8 30``), and a
        repeated ``--x a --x b`` extends a variable-length one; only for commands without
        positional arguments, which such an option would swallow.
    links: dotted field -> dotted fields that take its command-line value unless their own
        option is given too: one setting kept in the sections of alternatives of which a
        run uses one (``{"head.train.epochs": ("text.train.epochs",)}``).
    description: added to the help of the configuration group (e.g. where defaults come from).
    config_help: the help of --config where the command reads other files than a run's.
    names: see ``walk_fields``.
    repeatable: dotted variable-length tuple fields whose option may be given several
        times, each a comma list, the uses adding up (``--repeated a --repeated b``); unlike
        token_lists this keeps positional arguments after the option apart.
    config_key: the key under which the command's result files record this configuration
        (``--config`` reads that key of a JSON object holding it, else the whole object).
    """
    defaults = defaults if defaults is not None else root()
    options = tuple(o for o in walk_fields(root, prefixes=prefixes, aliases=aliases, names=names)
                    if o.dest not in skip)
    seen: dict[str, str] = {}
    for o in options:
        for flag in o.flags:
            if flag in seen:  # a new field whose name clashes: give its section a SECTION_PREFIX
                raise TypeError(f"option {flag} would set both {seen[flag]} and {o.dest}")
            seen[flag] = o.dest
    by_dest = {o.dest: o for o in options}
    taken = {action.dest for action in parser._actions} & set(by_dest)
    if taken:  # the command's own argument would be read as the field (or the field lost)
        raise TypeError(f"fields {', '.join(sorted(taken))} share their dest with an argument of the command; "
                        "give that argument another dest")
    for dotted in repeatable:
        opt = by_dest.get(dotted)
        inner = _split_optional(opt.hint)[0] if opt is not None else None
        if typing.get_origin(inner) is not tuple or typing.get_args(inner)[-1] is not Ellipsis:
            raise TypeError(f"repeatable {dotted}: not a variable-length tuple field with an option")
    links = links or {}
    for source, followers in links.items():
        for dotted in (source, *followers):
            if dotted not in by_dest:
                raise TypeError(f"link {source} -> {', '.join(followers)}: {dotted} has no option")
    run_path = _find_run_path(root)
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help=config_help or "JSON configuration: config_to_dict output, or a run folder's run.json "
                                            "or scores.json (its \"config\"); options given here override it")
    about = f"every field of {root.__name__} (codegraph_ad.options)" + (f"; {description}" if description else "")
    group = parser.add_argument_group("configuration", about)
    for o in options:
        followers = links.get(o.dest, ())
        note = "".join(f"; sets {d} too unless {by_dest[d].flags[0]} is given" for d in followers)
        _add_option(group, o, defaults, token_lists, note, o.dest in repeatable)
    if run_path is not None:
        group.add_argument("--q", type=float, default=argparse.SUPPRESS, dest="_q", metavar="X",
                           help="MSM share q of the chosen method: --msm-q for musc, --final-q for codegraph")
        group.add_argument("--graph-layers", default=argparse.SUPPRESS, dest="_graph_layers", metavar="INT,...",
                           type=value_parser(tuple[int, ...], "--graph-layers"),
                           help="deprecated: 0-based indices into --layers; use --graph-blocks (block numbers)")
    spec = ConfigSpec(root, defaults, options, run_path, tuple(links.items()), config_key)
    parser.set_defaults(**{SPEC_DEST: spec})
    return spec


def add_run_options(p: argparse.ArgumentParser, root: type = RunConfig, defaults: Any = None,
                    skip: tuple[str, ...] = ()) -> ConfigSpec:
    """Options shared by every command that scores a batch: outputs and the whole config."""
    add_output_options(p)
    return add_config_options(p, root, defaults, skip)


def add_output_options(p: argparse.ArgumentParser) -> None:
    """Where results go and how (``--out``, overlays, overwrite, progress, feature cache);
    ``score`` takes these alone: its configuration is the reference run's."""
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--no-overlays", action="store_true", help="skip heatmap overlay PNGs")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the per-image feature cache")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="feature cache folder (default: $CODEGRAPH_AD_CACHE/features or ~/.cache/codegraph-ad/features)")


# --- namespace -> config -------------------------------------------------------------------

def read_json_file(path: str | Path) -> Any:
    """A JSON file's content; an unreadable or malformed file is a ConfigError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None


def read_config_file(path: str | Path, key: str = "config") -> dict[str, Any]:
    """The config dict of a JSON file: ``config_to_dict`` output, or the ``config`` (``key``)
    of a run.json / scores.json (an analysis.json's ``analysis_config``)."""
    data = read_json_file(path)
    if isinstance(data, dict) and isinstance(data.get(key), dict):
        data = data[key]
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object holding a configuration")
    return data


def _unknown_keys(obj: Any, data: dict[str, Any], prefix: str = "") -> list[str]:
    names = {f.name: getattr(obj, f.name) for f in fields(obj)}
    out = []
    for key, value in data.items():
        if key not in names:
            out.append(prefix + key)
        elif is_dataclass(names[key]) and isinstance(value, dict):
            out += _unknown_keys(names[key], value, f"{prefix}{key}.")
    return out


def load_config(path: str | Path, base: Any, key: str = "config") -> Any:
    """``base`` (the defaults of the command) updated by the configuration in ``path``
    (``key``: see ``read_config_file``)."""
    data = read_config_file(path, key)
    if isinstance(base, RunConfig):
        data = upgrade_run_dict(data)
    elif isinstance(data.get("run"), dict):
        data = {**data, "run": upgrade_run_dict(data["run"])}
    unknown = _unknown_keys(base, data)
    if unknown:
        raise ConfigError(f"{path}: unknown configuration field(s) {', '.join(unknown)} for {type(base).__name__}")
    try:
        return config_update(base, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _rebuild(obj: Any, changes: dict[tuple[str, ...], Any]) -> Any:
    """``obj`` with the leaf ``changes`` applied, each dataclass rebuilt once (so validation
    sees the final values together, not one change at a time)."""
    own: dict[str, Any] = {}
    nested: dict[str, dict[tuple[str, ...], Any]] = {}
    for path, value in changes.items():
        if len(path) == 1:
            own[path[0]] = value
        else:
            nested.setdefault(path[0], {})[path[1:]] = value
    for name, sub in nested.items():
        own[name] = _rebuild(getattr(obj, name), sub)
    return replace(obj, **own) if own else obj


def given_options(a: argparse.Namespace) -> dict[tuple[str, ...], Any]:
    """The configuration fields set on the command line, by path."""
    spec: ConfigSpec = getattr(a, SPEC_DEST)
    values = vars(a)
    return {o.path: values[o.dest] for o in spec.options if o.dest in values}


def _share_q_path(method: str) -> tuple[str, ...]:
    if method == "musc":
        return ("msm", "q")
    if method == "codegraph":
        return ("graph", "final_q")
    raise ConfigError(f"--q is MuSc's or CoDeGraph's share; for method {method!r} use --msm-q or --final-q")


def _run_extras(a: argparse.Namespace, base_run: RunConfig, given: dict[tuple[str, ...], Any]
                ) -> dict[tuple[str, ...], Any]:
    """--q and --graph-layers as changes of RunConfig fields (paths relative to the RunConfig)."""
    extra: dict[tuple[str, ...], Any] = {}
    values = vars(a)
    if "_q" in values:
        target = _share_q_path(given.get(("method",), base_run.method))
        if target in given and given[target] != values["_q"]:
            flag = "--msm-q" if target == ("msm", "q") else "--final-q"
            raise ConfigError(f"--q {values['_q']} and {flag} {given[target]} disagree; give one")
        extra[target] = values["_q"]
    if "_graph_layers" in values:
        warnings.warn("--graph-layers (0-based indices into --layers) is deprecated; use --graph-blocks "
                      "(1-based block numbers)", DeprecationWarning, stacklevel=3)
        if ("graph", "graph_blocks") in given:
            raise ConfigError("give --graph-blocks or the deprecated --graph-layers, not both")
        layers = given.get(("features", "layers"), base_run.features.layers)
        indices = values["_graph_layers"]
        if any(not 0 <= i < len(layers) for i in indices):
            raise ConfigError(f"--graph-layers {','.join(map(str, indices))}: 0-based indices into --layers "
                              f"{','.join(map(str, layers))} must be below {len(layers)}")
        extra[("graph", "graph_blocks")] = tuple(layers[i] for i in indices)
    return extra


def config_from_args(a: argparse.Namespace, fixed: dict[str, Any] | None = None, base: Any = None) -> Any:
    """The configuration of a parsed command line: defaults < --config file < options < ``fixed``.

    fixed: dotted field paths a command sets itself (``{"method": "musc"}``).
    base: the defaults of this command line in place of the parser's (e.g. settings read
        from an input folder), still below the --config file and the options.
    """
    spec: ConfigSpec = getattr(a, SPEC_DEST)
    base = spec.defaults if base is None else base
    if getattr(a, "config", None) is not None:
        base = load_config(a.config, base, spec.config_key)
    given = given_options(a)
    for source, followers in spec.links:
        if (path := tuple(source.split("."))) in given:
            for dotted in followers:
                given.setdefault(tuple(dotted.split(".")), given[path])
    for dotted, value in (fixed or {}).items():
        given[tuple(dotted.split("."))] = value
    changes = dict(given)
    if spec.run_path is not None:
        n = len(spec.run_path)
        run_given = {p[n:]: v for p, v in given.items() if p[:n] == spec.run_path}
        for p, v in _run_extras(a, _lookup(base, spec.run_path), run_given).items():
            changes[(*spec.run_path, *p)] = v
    try:
        config = _rebuild(base, changes)
    except TypeError as exc:
        raise ConfigError(str(exc)) from None
    if spec.run_path is not None:
        run = _lookup(config, spec.run_path)
        graph_layer_indices(run.features.layers, run.graph.graph_blocks)  # fails here, not after extraction
    return config


def option_for(root: type, dotted: str) -> ConfigOption:
    """The generated option of a field (tests, docs)."""
    for o in walk_fields(root):
        if o.dest == dotted:
            return o
    raise KeyError(dotted)


__all__ = ["ALIASES", "SECTION_PREFIX", "ConfigOption", "ConfigSpec", "add_config_options", "add_output_options",
           "add_run_options",
           "config_from_args", "given_options", "load_config", "option_for", "read_config_file", "read_json_file", "value_parser",
           "walk_fields"]
