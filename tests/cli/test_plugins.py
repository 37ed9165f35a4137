"""A user's backbone and method, registered in their own module, reach the command line
through $CODEGRAPH_AD_PLUGINS (the CLI runs no user code otherwise)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from tests.backbones.test_custom import _images

REPO = Path(__file__).resolve().parents[2]

PLUGIN = '''
from codegraph_ad import MuSc, register_backbone, register_method
from tests.backbones.test_custom import DEPTH, PATCH, TinyViT

register_backbone("plugin_vit", TinyViT, patch_size=PATCH, depth=DEPTH, mean=TinyViT.mean, std=TinyViT.std,
                  description="a plugin's ViT")


@register_method("plugin_musc")
class PluginMuSc(MuSc):
    """MuSc under a plugin's name."""
'''


def _cli(args: list[str], tmp_path: Path, plugins: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CODEGRAPH_AD_PLUGINS": plugins,
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO), str(REPO / "src")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "codegraph_ad.cli", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_plugin_backbone_and_method_run_from_the_cli(tmp_path):
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    listed = _cli(["methods"], tmp_path, "my_plugin")
    assert listed.returncode == 0, listed.stderr
    assert "plugin_musc" in listed.stdout and "MuSc under a plugin's name" in listed.stdout
    assert "plugin_vit" in _cli(["backbones"], tmp_path, "my_plugin").stdout
    folder = _images(tmp_path / "imgs")
    run = _cli(["detect", str(folder), "--out", str(tmp_path / "out"), "--method", "plugin_musc",
                "--backbone", "plugin_vit", "--image-size", "48", "--layers", "2,3", "--no-cache",
                "--no-overlays", "--quiet"], tmp_path, "my_plugin")
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader((tmp_path / "out" / "scores.csv").open()))
    assert max(rows, key=lambda r: float(r["score"]))["name"] == "3"  # the image with the red square


def test_a_broken_plugin_is_named(tmp_path):
    (tmp_path / "bad_plugin.py").write_text("raise RuntimeError('boom')\n")
    res = _cli(["methods"], tmp_path, "bad_plugin")
    assert res.returncode == 2
    assert "plugin module 'bad_plugin'" in res.stderr and "RuntimeError: boom" in res.stderr
    unknown = _cli(["detect", "x", "--out", "y", "--method", "plugin_musc"], tmp_path, "")
    assert unknown.returncode == 2 and "plugin_musc" in unknown.stderr
