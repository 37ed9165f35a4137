"""Repeated-defect groups end to end: a real CoDeGraph run on planted features (no backbone)
flags the planted images; scores.json lists them, the CLI summary names them, and
report.html opens with their section."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codegraph_ad.cli import main
from codegraph_ad.io.atomic import write_json
from codegraph_ad.io.run_folder import read_run_folder
from codegraph_ad.report.html import repeated_defect_groups, write_report
from tests.report.runs import PLANTED, planted_codegraph_result

PLANTED_NAMES = [f"im{i:02d}" for i in PLANTED]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """(RunResult, run folder) of the planted batch, written by the api's run writer."""
    from codegraph_ad.api import write_run

    root = tmp_path_factory.mktemp("planted")
    result = planted_codegraph_result(root / "images")
    write_run(result, root / "run", progress=False)
    return result, root / "run"


def test_scores_json_lists_the_planted_group(planted):
    _, run = planted
    scores = json.loads((run / "scores.json").read_text())
    excluded = np.load(run / "excluded.npy")
    (group,) = scores["repeated_defect_groups"]
    assert sorted(group["images"]) == PLANTED_NAMES and group["size"] == len(PLANTED)
    assert sorted(group["indices"]) == list(PLANTED)
    assert group["excluded_per_image"] == [int(excluded[i].sum()) for i in group["indices"]]
    assert group["excluded_patches"] == int(excluded[list(PLANTED)].sum()) > 0
    assert group["excluded_share"] == pytest.approx(group["excluded_patches"] / (len(PLANTED) * excluded.shape[1]))
    assert group["density"] > 0
    # A top-level field, listed before the per-image rows.
    keys = list(scores)
    assert keys.index("repeated_defect_groups") < keys.index("images")


def _expected_line(run: Path) -> str:
    excluded = np.load(run / "excluded.npy")
    group = json.loads((run / "scores.json").read_text())["repeated_defect_groups"][0]
    return (f"Repeated defect: {len(PLANTED)} images share a repeated defect: {', '.join(group['images'])} "
            f"({int(excluded.sum())} patches excluded from the references)")


def test_detect_and_evaluate_summaries_name_the_group(planted, tmp_path, monkeypatch, capsys):
    """The real ``detect`` / ``evaluate`` commands, with the api call swapped for the planted run."""
    import codegraph_ad.api as api

    result, run = planted

    def fake_detect(folder, out, config, **kwargs):
        api.write_run(result, Path(out), progress=False, report=False)
        return result

    def fake_evaluate(category_dir, out, config, **kwargs):
        return api.EvaluationResult(result, {"image": {"auroc": 1.0}})

    monkeypatch.setattr(api, "detect", fake_detect)
    monkeypatch.setattr(api, "evaluate", fake_evaluate)
    assert main(["detect", str(tmp_path / "images"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert _expected_line(run) in printed
    at = printed.index(_expected_line(run))  # after the scores, before the closing summary
    assert printed[at - 1].endswith("more in scores.csv")
    assert printed[at + 1].startswith(f"{result.decision.n_flagged} of {len(result.names)} images flagged")
    assert printed[at + 2] == ""
    assert printed[at + 3].startswith(f"{len(result.names)} images scored in ")
    assert printed[at + 3].endswith(", 1 repeated-defect group")
    assert main(["evaluate", str(tmp_path / "cat"), "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    assert _expected_line(run) in capsys.readouterr().out.splitlines()


def test_summary_says_nothing_without_a_group(planted, tmp_path, monkeypatch, capsys):
    import codegraph_ad.api as api

    result, _ = planted
    musc = type(result.scores)(result.scores.patch_scores, result.scores.image_scores,
                               result.scores.raw_image_scores, result.scores.grid, None, {"method": "musc"})
    plain = api.RunResult(result.names, result.paths, musc, result.config, {}, result.original_sizes)
    monkeypatch.setattr(api, "detect", lambda *args, **kwargs: plain)
    assert main(["detect", str(tmp_path / "images"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert "Repeated defect" not in capsys.readouterr().out


def _sections(page: str) -> list[str]:
    main_html = page[page.index("<main>"):page.index("</main>")]
    return re.findall(r'<section id="([^"]+)"', main_html)


def _group_section(page: str) -> str:
    start = page.index('<section id="repeated-defect-1"')
    return page[start:page.index("</section>", start)]


def test_report_opens_with_the_group(planted):
    _, run = planted
    page = (run / "report.html").read_text()
    assert _sections(page)[:2] == ["repeated-defect-1", "summary"]
    assert re.search(r"<nav><a href=\"#repeated-defect-1\">", page)
    section = _group_section(page)
    assert f"<h2>{len(PLANTED)} images share a repeated defect</h2>" in section
    excluded = np.load(run / "excluded.npy")
    assert f"{int(excluded.sum())} patches excluded from the references" in section
    for i, name in zip(PLANTED, PLANTED_NAMES):
        assert f'data-open="{i}">{name}</a>' in section
    thumbs = re.findall(r'<figure class="group-thumb"><a href="#" data-open="(\d+)"><img [^>]*src="([^"]+)"', section)
    assert sorted(int(i) for i, _ in thumbs) == list(PLANTED)
    # Each thumbnail is the member's overlay with its excluded cells outlined in magenta.
    for i, uri in thumbs:
        img = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")).astype(int)
        magenta = (img[..., 0] > 200) & (img[..., 1] < 80) & (img[..., 2] > 200)
        assert magenta.any() == bool(excluded[int(i)].any()), i


def test_old_run_folder_gets_the_same_section(planted, tmp_path):
    """A run written before the field existed: the report derives the groups from the diagnostics."""
    _, run = planted
    old = tmp_path / "old"
    shutil.copytree(run, old)
    scores = json.loads((old / "scores.json").read_text())
    stored = scores.pop("repeated_defect_groups")
    write_json(old / "scores.json", scores)
    assert read_run_folder(old).stored_repeated_defect_groups is None
    assert repeated_defect_groups(read_run_folder(old)) == stored
    page = write_report(old).read_text()
    assert _sections(page)[0] == "repeated-defect-1"
    assert _group_section(page) == _group_section((run / "report.html").read_text())


def test_no_group_no_section(planted, tmp_path):
    _, run = planted
    clean = tmp_path / "clean"
    shutil.copytree(run, clean)
    scores = json.loads((clean / "scores.json").read_text())
    scores["repeated_defect_groups"] = []
    write_json(clean / "scores.json", scores)
    page = write_report(clean).read_text()
    assert 'id="repeated-defect' not in page and "#repeated-defect-1" not in page
    assert _sections(page)[0] == "summary"


def test_volume_run_writer_lists_groups(planted, tmp_path):
    """Volumes write through the same run-folder writer: their scores.json gets the same field."""
    from codegraph_ad.io.run_folder import Manifest, RunWriter, ScoreRow
    from codegraph_ad.volumes.outputs import write_volume_tables

    result, _ = planted
    rows = [ScoreRow(n, "", 0.0) for n in result.names]
    with RunWriter.replace(tmp_path) as writer:
        write_volume_tables(writer, rows, {"diagnostics": result.scores.diagnostics}, {},
                            Manifest(result.names, [""] * len(result.names), (2, 2, 2), {}))
    (group,) = json.loads((tmp_path / "scores.json").read_text())["repeated_defect_groups"]
    assert sorted(group["images"]) == PLANTED_NAMES


def test_a_group_none_of_whose_images_is_flagged_is_reported_as_look_alikes(planted, tmp_path, monkeypatch, capsys):
    """The same planted community under a threshold no image reaches: scores.json, the terminal
    and report.html call it a look-alike group, not a repeated defect (the mostly-good MPDD
    batch's 18 good plates, docs/codegraph.md)."""
    import dataclasses

    import codegraph_ad.api as api
    from codegraph_ad.decision import Decision

    result, _ = planted
    flags = np.zeros(len(result.names), dtype=bool)
    flags[next(i for i in range(len(flags)) if i not in PLANTED)] = True  # one other image only
    unflagged = dataclasses.replace(result, decision=Decision(flags, 1.0, "fixed", None))
    api.write_run(unflagged, tmp_path / "run", progress=False)
    (group,) = json.loads((tmp_path / "run" / "scores.json").read_text())["repeated_defect_groups"]
    assert sorted(group["images"]) == PLANTED_NAMES
    assert (group["kind"], group["anomalous_images"]) == ("look_alike", 0)
    (flagged,) = json.loads((planted[1] / "scores.json").read_text())["repeated_defect_groups"]
    assert flagged["kind"] == "repeated_defect" and flagged["anomalous_images"] * 2 >= flagged["size"]

    monkeypatch.setattr(api, "detect", lambda *args, **kwargs: unflagged)
    assert main(["detect", str(tmp_path / "images"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "Repeated defect:" not in printed
    assert f"Look-alike group, no repeated defect: {len(PLANTED)} images are unusually alike, 0 of them flagged" in printed
    assert ", 1 flagged, 1 look-alike group" in printed

    section = _group_section((tmp_path / "run" / "report.html").read_text())
    assert f"<h2>{len(PLANTED)} images are unusually alike: no repeated defect found</h2>" in section
    assert "share a repeated defect" not in section
