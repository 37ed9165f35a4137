"""The main job end to end: generated images in, scores, maps and overlays out."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from codegraph_ad.cli import main
from codegraph_ad.demo import make_demo_images

SMALL = ["--image-size", "112", "--quiet"]


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo") / "images"
    make_demo_images(folder, n_normal=10)
    return folder


@pytest.mark.parametrize("method", ["musc", "codegraph"])
def test_detect_cli_ranks_defects_first_and_writes_outputs(demo_folder, tmp_path, method, capsys):
    out = tmp_path / "run"
    assert main(["detect", str(demo_folder), "--out", str(out), "--method", method, *SMALL]) == 0
    with (out / "scores.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 13
    ranked = sorted(rows, key=lambda r: -float(r["score"]))
    top3 = {r["name"] for r in ranked[:3]}
    assert top3 == {"defect_scratch", "defect_stain", "defect_foreign"}, ranked
    meta = json.loads((out / "scores.json").read_text())
    assert meta["config"]["method"] == method
    assert "torch" in meta["versions"] and meta["timings"]["features_s"] > 0
    for r in rows:
        amap = np.load(out / "maps" / f"{r['name']}.npy")
        assert amap.shape == (256, 256) and np.isfinite(amap).all()
        assert (out / "overlays" / f"{r['name']}.png").exists()
    assert (out / "run.json").exists()
    if method == "codegraph":
        assert (out / "excluded.npy").exists() and (out / "graph.png").exists()
        assert "exclusion_rate" in meta["diagnostics"]
        excluded = np.load(out / "excluded.npy")
        overlays_of_excluded = sorted(p.stem for p in (out / "excluded").glob("*.png")) if excluded.any() else []
        assert overlays_of_excluded == sorted(r["name"] for i, r in enumerate(rows) if excluded[i].any())
    printed = capsys.readouterr().out
    assert "defect_" in printed.splitlines()[1]


def test_refuses_to_overwrite_another_run(demo_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["detect", str(demo_folder), "--out", str(out), "--method", "musc", "--no-overlays", *SMALL]) == 0
    assert main(["detect", str(demo_folder), "--out", str(out), "--method", "musc", *SMALL]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["detect", str(demo_folder), "--out", str(out), "--method", "musc", "--overwrite",
                 "--no-overlays", *SMALL]) == 0


def test_too_small_batch_and_missing_folder_are_clear_errors(tmp_path, capsys):
    folder = tmp_path / "two"
    paths = make_demo_images(tmp_path / "all", n_normal=2)
    folder.mkdir()
    for p in paths[:2]:
        (folder / p.name).write_bytes(p.read_bytes())
    assert main(["detect", str(folder), "--out", str(tmp_path / "o"), *SMALL]) == 2
    assert "at least 3" in capsys.readouterr().err
    assert main(["detect", str(tmp_path / "nope"), "--out", str(tmp_path / "o2"), *SMALL]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o" / "scores.csv").exists()


def test_unreadable_file_is_named(demo_folder, tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    for p in sorted(demo_folder.iterdir())[:4]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.png").write_bytes(b"not a png at all")
    assert main(["detect", str(folder), "--out", str(tmp_path / "o"), *SMALL]) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "--skip-bad" in err
    assert main(["detect", str(folder), "--out", str(tmp_path / "o"), "--skip-bad", "--method", "musc", *SMALL]) == 0
    meta = json.loads((tmp_path / "o" / "scores.json").read_text())
    assert [s["path"].endswith("broken.png") for s in meta["skipped"]] == [True]


STAGES = {"reading", "features", "first pass", "graph", "final pass", "writing", "scoring"}


def bar_lines(err: str) -> list[str]:
    """The final state of every progress bar drawn (tqdm ends a kept bar with a newline)."""
    lines = [line.split("\r")[-1] for line in err.split("\n")]
    return [line for line in lines if "%|" in line]


@pytest.mark.parametrize("method", ["codegraph", "musc"])
def test_detect_draws_at_most_one_bar_per_stage(demo_folder, tmp_path, method, capsys):
    out = tmp_path / "run"
    assert main(["detect", str(demo_folder), "--out", str(out), "--method", method, "--no-cache",
                 "--image-size", "112"]) == 0
    captured = capsys.readouterr()
    names = [line.split(":")[0] for line in bar_lines(captured.err)]
    assert len(names) == len(set(names)), names  # one bar per stage, not one per layer and degree
    assert set(names) <= STAGES, names
    expected = {"codegraph": ["reading", "features", "first pass", "graph", "final pass", "writing"],
                "musc": ["reading", "features", "scoring", "writing"]}[method]
    assert names == expected
    assert all(line.split(":")[1].lstrip().startswith("100%") for line in bar_lines(captured.err))
    # the summary closes the output: count, time, where the report is
    tail = captured.out.strip().splitlines()
    assert tail[-2].startswith("13 images scored in ")
    assert tail[-1] == f"report: {out / 'report.html'}"


def test_quiet_draws_no_bar(demo_folder, tmp_path, capsys):
    assert main(["detect", str(demo_folder), "--out", str(tmp_path / "run"), "--method", "musc", *SMALL]) == 0
    err = capsys.readouterr().err
    assert "%|" not in err and "\r" not in err


def test_every_unreadable_file_is_named_in_one_message(demo_folder, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "bad"
    folder.mkdir()
    for p in sorted(demo_folder.iterdir())[:4]:
        (folder / p.name).write_bytes(p.read_bytes())
    bad = {"a_broken.png": b"not a png at all", "m_empty.jpg": b"", "z_cut.png": demo_folder.joinpath(
        sorted(p.name for p in demo_folder.iterdir())[0]).read_bytes()[:60]}
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    from codegraph_ad.backbones import from_config

    def no_backbone(*args, **kwargs):
        raise AssertionError("the backbone was built before the bad files were reported")

    monkeypatch.setattr(from_config, "backbone_from_config", no_backbone)
    assert main(["detect", str(folder), "--out", str(tmp_path / "o"), "--no-cache", *SMALL]) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 1 and "3 files cannot be read" in err and "--skip-bad" in err
    for name in bad:
        assert err.count(name) == 1, err
    assert "empty file" in err
    assert not (tmp_path / "o").exists()


def test_demo_command(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--method", "musc", "--no-overlays", *SMALL]) == 0
    assert (tmp_path / "run" / "scores.csv").exists()


def test_detect_writes_the_decision(demo_folder, tmp_path, capsys):
    """Issue 26: an `anomalous` column, the threshold with its rule in scores.json, the count
    on the terminal and at the top of report.html."""
    from codegraph_ad.config import DecisionConfig
    from codegraph_ad.decision import decide
    from codegraph_ad.io.run_folder import read_run_folder

    out = tmp_path / "run"
    assert main(["detect", str(demo_folder), "--out", str(out), "--method", "musc", "--no-overlays", *SMALL]) == 0
    with (out / "scores.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:5] == ["name", "path", "score", "raw_score", "anomalous"]
    assert {r["anomalous"] for r in rows} <= {"true", "false"}
    decision = json.loads((out / "scores.json").read_text())["decision"]
    assert decision["rule"] == DecisionConfig().rule and decision["false_alarm_rate"] == 0.01
    scores = np.array([float(r["score"]) for r in rows])
    expected = decide(scores)  # the csv's 8 digits do not move a score across the threshold here
    assert decision["threshold"] == pytest.approx(expected.threshold, rel=1e-6)
    assert [r["anomalous"] == "true" for r in rows] == expected.anomalous.tolist()
    flagged = {r["name"] for r in rows if r["anomalous"] == "true"}
    assert {"defect_scratch", "defect_stain", "defect_foreign"} <= flagged
    assert decision["n_flagged"] == len(flagged) and decision["n_images"] == 13
    run = read_run_folder(out)
    assert run.decision == decision and sum(bool(r.anomalous) for r in run.score_rows) == len(flagged)
    line = f"{len(flagged)} of 13 images flagged (threshold"
    assert line in capsys.readouterr().out
    assert line in (out / "report.html").read_text()


def test_threshold_override(demo_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["detect", str(demo_folder), "--out", str(out), "--method", "musc", "--no-overlays",
                 "--threshold", "-1", *SMALL]) == 0
    decision = json.loads((out / "scores.json").read_text())["decision"]
    assert decision == {**decision, "threshold": -1.0, "rule": "fixed", "false_alarm_rate": None, "n_flagged": 13}
    assert "13 of 13 images flagged (threshold -1, rule fixed)" in capsys.readouterr().out
    with (out / "scores.csv").open() as fh:
        assert all(r["anomalous"] == "true" for r in csv.DictReader(fh))
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["decision"]["threshold"] == -1.0
