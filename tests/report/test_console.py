"""The closing summary of the scoring commands: counts, time, where the report is."""

from __future__ import annotations

from types import SimpleNamespace

from codegraph_ad.cli import flagged_count
from codegraph_ad.config import DecisionConfig
from codegraph_ad.decision import decide
from codegraph_ad.report.console import format_duration, print_score_rows, run_summary


def test_summary_says_counts_time_and_report(tmp_path) -> None:
    (tmp_path / "report.html").write_text("<html></html>")
    assert run_summary(17, 104.6, tmp_path) == ["17 images scored in 1 min 45 s", f"report: {tmp_path / 'report.html'}"]
    lines = run_summary(1, 3.21, tmp_path, flagged=2, groups=1, skipped=3)
    assert lines[0] == ("1 image scored in 3.2 s, 2 flagged, 1 repeated-defect group, "
                        "3 unreadable files skipped")
    assert run_summary(5, 1.0, tmp_path, flagged=0, groups=2)[0] == ("5 images scored in 1.0 s, 0 flagged, "
                                                                     "2 repeated-defect groups")


def test_summary_without_report_points_at_the_results(tmp_path) -> None:
    assert run_summary(3, 1.0, tmp_path)[1] == f"results: {tmp_path} (no report.html)"
    assert run_summary(3, 1.0, None) == ["3 images scored in 1.0 s"]
    assert run_summary(2, 1.0, None, item="volume") == ["2 volumes scored in 1.0 s"]


def test_durations_read_at_a_glance() -> None:
    assert format_duration(0.04) == "0.0 s"
    assert format_duration(59.94) == "59.9 s"
    assert format_duration(60) == "1 min 00 s"
    assert format_duration(3725) == "1 h 02 min"


def test_flagged_count_reads_the_runs_flags_when_present() -> None:
    assert flagged_count(SimpleNamespace()) is None
    assert flagged_count(SimpleNamespace(decision=None)) is None
    flags = decide([0.1, 0.11, 0.12, 0.1, 0.11, 0.12, 0.1, 0.11, 0.9, 0.95], DecisionConfig(threshold=0.5))
    assert flagged_count(SimpleNamespace(decision=flags)) == 2


def test_top_scores_stay_short(capsys) -> None:
    rows = [{"name": f"img{i}", "score": float(i)} for i in range(12)]
    print_score_rows(rows, limit=5)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].endswith("img11") and len(lines) == 7 and lines[-1] == "... 7 more in scores.csv"
