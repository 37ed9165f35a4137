"""``detect --config RUN_DIR/run.json`` replays a run: same inputs, same names, same scores."""

from __future__ import annotations

import json

import pytest

from codegraph_ad.cli import main
from codegraph_ad.demo import make_demo_images

SMALL = ["--image-size", "112", "--quiet", "--no-overlays"]


@pytest.fixture(scope="module")
def nested_folder(tmp_path_factory):
    """Images in two subfolders, so that the run's names carry the folder (``a__normal_000``)."""
    folder = tmp_path_factory.mktemp("replay") / "images"
    make_demo_images(folder / "a", n_normal=5)
    make_demo_images(folder / "b", n_normal=5, seed=1)
    return folder


def test_detect_replays_a_run_from_its_run_json(nested_folder, tmp_path):
    first = tmp_path / "first"
    assert main(["detect", str(nested_folder), "--out", str(first), "--method", "musc", "--q", "0.2",
                 "--lnamd-degrees", "1,3", *SMALL]) == 0
    manifest = json.loads((first / "run.json").read_text())
    assert manifest["config"]["msm"]["q"] == 0.2 and manifest["names"][0].startswith("a__")
    again = tmp_path / "again"
    assert main(["detect", "--config", str(first / "run.json"), "--out", str(again), "--quiet", "--no-overlays"]) == 0
    assert (again / "scores.csv").read_bytes() == (first / "scores.csv").read_bytes()
    replayed = json.loads((again / "run.json").read_text())
    assert replayed["config"] == manifest["config"] and replayed["names"] == manifest["names"]


def test_replay_with_an_override_and_without_a_run(nested_folder, tmp_path, capsys):
    first = tmp_path / "first"
    assert main(["detect", str(nested_folder / "a"), "--out", str(first), "--method", "musc", *SMALL]) == 0
    other = tmp_path / "other"
    assert main(["detect", "--config", str(first / "run.json"), "--out", str(other), "--q", "0.5", *SMALL]) == 0
    replayed = json.loads((other / "run.json").read_text())
    assert replayed["config"]["msm"]["q"] == 0.5 and replayed["config"]["method"] == "musc"
    assert replayed["names"] == json.loads((first / "run.json").read_text())["names"]
    assert main(["detect", "--out", str(tmp_path / "none"), *SMALL]) == 2
    assert "FOLDER" in capsys.readouterr().err
    assert main(["detect", "--config", str(first / "scores.json"), "--out", str(tmp_path / "s"), *SMALL]) == 2
    assert "paths" in capsys.readouterr().err
