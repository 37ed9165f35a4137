"""Flat keyword parameters derived from the config dataclasses, in the scikit-learn manner.

The config dataclasses in ``config.py`` stay the one place of defaults and validation: a
class lists the config sections it reads (``Section``) and ``flat_parameters`` adds one
keyword-only parameter per config field, with that field's type and default. ``__init__``
only stores the values; ``configs()`` builds the dataclasses when they are needed, so a bad
value fails there with a message naming the flat parameter.

Flat names are the config field names, except where a field name alone would be unclear
or two sections share it; those are renamed per section (``Section.renames``), e.g.
``RsCINConfig.enabled`` -> ``rscin`` and ``RsCINConfig.k_list`` -> ``rscin_k_list``.
Used by the method estimators (``methods/``) and ``features.extractor.FeatureExtractor``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar, Self

from codegraph_ad.errors import ConfigError


@dataclass(frozen=True)
class Section:
    """One config dataclass a flat-parameter class reads.

    attr: its attribute on ``RunConfig`` (``"lnamd"``, ``"graph"``, ...).
    cls: the dataclass. renames: config field -> flat parameter name, where they differ.
    """

    attr: str
    cls: type
    renames: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def flat_names(self) -> dict[str, str]:
        """config field -> flat parameter name, in field order."""
        return {f.name: self.renames.get(f.name, f.name) for f in fields(self.cls)}


def flat_parameters(*sections: Section):
    """Class decorator: one keyword-only dataclass field per config field of ``sections``,
    in section order, then the class's own annotated parameters (``progress``, ...).

    Two sections yielding the same flat name is a programming error caught at import.
    """

    def wrap(cls: type) -> type:
        own = dict(cls.__dict__.get("__annotations__", {}))
        annotations: dict[str, Any] = {}
        origin: dict[str, str] = {}
        for section in sections:
            config_fields = {f.name: f for f in fields(section.cls)}
            for field_name, flat in section.flat_names().items():
                if flat in origin or flat in own:
                    where = origin.get(flat, f"{cls.__name__}'s own parameters")
                    raise TypeError(f"{cls.__name__}: flat parameter {flat!r} from {section.cls.__name__} "
                                    f"clashes with {where}; add it to Section.renames")
                f = config_fields[field_name]
                origin[flat] = f"{section.cls.__name__}.{field_name}"
                annotations[flat] = f.type
                if f.default is not MISSING:
                    setattr(cls, flat, f.default)
                else:
                    setattr(cls, flat, dataclasses.field(default_factory=f.default_factory))
        annotations.update(own)
        cls.__annotations__ = annotations
        cls.sections = sections
        return dataclass(kw_only=True, repr=False, eq=False)(cls)

    return wrap


def _as_config_value(value: Any) -> Any:
    """Lists become tuples, as ``config_from_dict`` does, so configs stay hashable."""
    return tuple(value) if isinstance(value, list) else value


class FlatParams:
    """``get_params`` / ``set_params`` / ``repr`` / ``configs`` of a ``flat_parameters`` class."""

    sections: ClassVar[tuple[Section, ...]] = ()

    # -- parameters -------------------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]  # type: ignore[arg-type]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Every constructor parameter and its value (``deep`` is accepted for scikit-learn;
        there are no nested estimators)."""
        return {name: getattr(self, name) for name in self.param_names()}

    def set_params(self, **params: Any) -> Self:
        """Change parameters in place and return the estimator; unknown names are an error."""
        valid = self.param_names()
        unknown = [k for k in params if k not in valid]
        if unknown:
            raise ConfigError(f"{type(self).__name__} has no parameter {', '.join(map(repr, unknown))}; "
                              f"valid: {', '.join(valid)}")
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        """Like scikit-learn: only the parameters that differ from their defaults."""
        changed = []
        for f in fields(self):  # type: ignore[arg-type]
            default = f.default if f.default is not MISSING else (
                f.default_factory() if f.default_factory is not MISSING else MISSING)
            value = getattr(self, f.name)
            if not _same(value, default):
                changed.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def _config_value(self, flat: str) -> Any:
        """The value a config field receives from parameter ``flat`` (a hook for parameters
        that also accept objects, such as a backbone)."""
        return getattr(self, flat)

    def configs(self) -> dict[str, Any]:
        """``{RunConfig attribute: config dataclass}`` built from the parameters; this is
        where they are validated, and an error names the estimator's parameter."""
        built = {}
        for section in self.sections:
            names = section.flat_names()
            kwargs = {field_name: _as_config_value(self._config_value(flat)) for field_name, flat in names.items()}
            try:
                built[section.attr] = section.cls(**kwargs)
            except ConfigError as exc:
                message = str(exc)
                for field_name, flat in names.items():
                    if flat != field_name and message.startswith(field_name + " "):
                        message = flat + message[len(field_name):]
                raise ConfigError(f"{type(self).__name__}: {message}") from None
            except (TypeError, ValueError) as exc:
                given = ", ".join(f"{flat}={getattr(self, flat)!r}" for flat in names.values())
                raise ConfigError(f"{type(self).__name__}: invalid value among {given} ({exc})") from None
        return built


def _same(a: Any, b: Any) -> bool:
    if hasattr(a, "shape") or hasattr(b, "shape"):  # arrays and tensors: only the same object
        return a is b
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # noqa: BLE001 - odd values are simply shown
        return False
