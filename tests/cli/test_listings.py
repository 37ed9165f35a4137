"""`codegraph-ad backbones` and `codegraph-ad methods` read the registries, user entries included."""

from __future__ import annotations

from codegraph_ad import MuSc, register_method
from codegraph_ad.cli import main
from codegraph_ad.registry import BACKBONES, METHODS


def _lines(capsys, argv: list[str]) -> list[str]:
    assert main(argv) == 0
    return capsys.readouterr().out.splitlines()


def test_backbones_lists_the_registry_default_first(capsys):
    lines = _lines(capsys, ["backbones"])
    assert [line.split()[0] for line in lines] == BACKBONES.names()
    assert lines[0].startswith("dinov2_vits14_imgfocus ") and "offline" in lines[0]


def test_methods_lists_builtins_then_a_user_method_with_their_input(capsys):
    lines = _lines(capsys, ["methods"])
    assert [line.split()[:2] for line in lines][:3] == [["codegraph", "features"], ["musc", "features"],
                                                       ["winclip", "images"]]

    class Quiet(MuSc):
        """MuSc under another name (a user's method)."""

    register_method("quiet_musc", Quiet)
    try:
        lines = _lines(capsys, ["methods"])
        assert lines[-1].split()[:2] == ["quiet_musc", "features"]
        assert "a user's method" in lines[-1]
    finally:
        METHODS.unregister("quiet_musc")
    assert "quiet_musc" not in METHODS
