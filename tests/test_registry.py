"""The generic open registry behind BACKBONES and METHODS (registry.py)."""

from __future__ import annotations

import sys
import types

import pytest

from codegraph_ad.errors import ConfigError
from codegraph_ad.registry import Registry


def test_register_get_names_and_refusals():
    r: Registry = Registry("thing", first=("b",))
    r.register("a", 1)

    @r.register("b")
    def b():
        return 2

    assert r.get("b") is b and r.get("a") == 1
    assert r.names() == ["b", "a"] and list(r) == ["b", "a"] and len(r) == 2 and "a" in r
    with pytest.raises(ConfigError, match="thing 'a' is already registered; pass overwrite=True"):
        r.register("a", 3)
    r.register("a", 1)  # the same object again is not a clash
    assert r.register("a", 3, overwrite=True) == 3 and r.get("a") == 3
    with pytest.raises(ConfigError, match=r"unknown thing 'z'; known: b, a"):
        r.get("z")
    for bad in ("", " a", None):
        with pytest.raises(ConfigError, match="non-empty string"):
            r.register(bad, 1)
    r.unregister("a")
    assert r.names() == ["b"]
    with pytest.raises(ConfigError, match="unknown thing 'a'"):
        r.unregister("a")


def test_builtins_load_on_first_lookup_once(monkeypatch):
    r: Registry = Registry("widget", builtins=("fake_widgets",))
    imported = []

    module = types.ModuleType("fake_widgets")
    monkeypatch.setitem(sys.modules, "fake_widgets", module)
    real_import = __import__("importlib").import_module

    def spy(name, *args):
        imported.append(name)
        if name == "fake_widgets":
            r.register("built_in", object())
        return real_import(name, *args)

    monkeypatch.setattr("codegraph_ad.registry.importlib.import_module", spy)
    assert imported == []  # nothing is imported before a lookup
    assert r.names() == ["built_in"] and "built_in" in r
    assert imported == ["fake_widgets"]
    with pytest.raises(ConfigError, match="widget 'built_in' is already registered"):
        r.register("built_in", object())
