"""Open registries of backbones and scoring methods (timm's ``register_model`` is the model).

The registries sit at the bottom of the package so that the configuration, the CLI and the
benchmarks can all read them without importing the heavy areas: the built-in entries are
registered by their own modules, which a registry imports the first time it is asked for
its names. A user registers their own entry from their code before building a config:

    from codegraph_ad import register_method
    @register_method("my_method")
    class MyMethod: ...

The command line runs no user code, so it imports plugins first (``load_plugins``): the
modules named in ``CODEGRAPH_AD_PLUGINS`` (comma-separated) and the ``codegraph_ad.plugins``
entry points of installed packages; whatever they register then appears in the CLI's choices.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

from codegraph_ad.errors import ConfigError

T = TypeVar("T")

PLUGINS_ENV = "CODEGRAPH_AD_PLUGINS"
PLUGINS_GROUP = "codegraph_ad.plugins"
_plugins_loaded = False


def load_plugins() -> None:
    """Import the user's plugin modules once (env variable, then entry points); a plugin
    that fails to import is named in the error rather than silently missing."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    names = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any failure of user code, reported by name
            raise ConfigError(f"plugin module {name!r} (from ${PLUGINS_ENV}) failed to import: "
                              f"{exc.__class__.__name__}: {exc}") from exc
    for ep in importlib.metadata.entry_points(group=PLUGINS_GROUP):
        try:
            ep.load()
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"plugin {ep.name!r} ({ep.value}, entry point group {PLUGINS_GROUP}) "
                              f"failed to load: {exc.__class__.__name__}: {exc}") from exc


class Registry(Generic[T]):
    """Name -> entry, filled by decorators; the built-in modules load on first lookup.

    kind: what the entries are, for error messages ("backbone", "method").
    builtins: modules whose import registers the built-in entries.
    first: names listed first by ``names()`` when registered (the default first of all):
        the built-ins register in whatever order their modules happen to be imported.
    """

    def __init__(self, kind: str, builtins: tuple[str, ...] = (), first: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._builtins = builtins
        self._first = first
        self._loaded = False
        self._entries: dict[str, T] = {}

    def _load_builtins(self) -> None:
        if not self._loaded:
            self._loaded = True  # before importing: the modules register through this object
            for module in self._builtins:
                importlib.import_module(module)

    @overload
    def register(self, name: str, entry: None = None, *, overwrite: bool = False) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, entry: T, *, overwrite: bool = False) -> T: ...

    def register(self, name: str, entry: T | None = None, *, overwrite: bool = False):
        """Add ``entry`` under ``name``; without ``entry``, a decorator that does it.

        A name taken by another entry is refused unless ``overwrite``: two plugins that pick
        the same name must not silently replace each other.
        """
        if not isinstance(name, str) or not name or name != name.strip():
            raise ConfigError(f"a {self.kind} name must be a non-empty string without spaces around it, got {name!r}")

        def add(obj: T) -> T:
            self._load_builtins()
            if name in self._entries and self._entries[name] is not obj and not overwrite:
                raise ConfigError(f"{self.kind} {name!r} is already registered; pass overwrite=True to replace it")
            self._entries[name] = obj
            return obj

        return add if entry is None else add(entry)

    def unregister(self, name: str) -> None:
        """Remove a user entry (tests, notebooks); unknown names are an error."""
        self.get(name)
        del self._entries[name]

    def get(self, name: str) -> T:
        """The entry for ``name``; the error lists every known name."""
        self._load_builtins()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        """Registered names: the ``first`` ones (the default first of all), then registration order."""
        self._load_builtins()
        head = [n for n in self._first if n in self._entries]
        return head + [n for n in self._entries if n not in head]

    def __contains__(self, name: object) -> bool:
        self._load_builtins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())


BACKBONES: Registry = Registry("backbone", builtins=("codegraph_ad.backbones.registry",),
                               first=("dinov2_vits14_imgfocus",))
METHODS: Registry = Registry("method", builtins=("codegraph_ad.methods", "codegraph_ad.methods.winclip"),
                             first=("codegraph", "musc"))
