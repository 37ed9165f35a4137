"""The run's progress display: one bar per stage, inner loops advancing it, nothing when off."""

from __future__ import annotations

import io

import pytest
import torch

from codegraph_ad.engine.mutual import pair_minima
from codegraph_ad.progress import Progress

from .conftest import unit_features


def finished_bars(text: str) -> list[str]:
    """The last state of every bar drawn: tqdm ends a kept bar with a newline."""
    return [line.split("\r")[-1] for line in text.split("\n") if line.split("\r")[-1].strip()]


def test_stage_draws_one_bar_that_nested_parts_fill() -> None:
    out = io.StringIO()
    root = Progress(True, file=out)
    with root.stage("first pass", 3, "maps") as bar:
        for _ in range(3):
            with bar.stage("blocks", 4) as part:
                for _ in range(4):
                    part.advance()
        assert bar._display.bar.n == pytest.approx(3.0)
    assert root.opened == ["first pass"]
    lines = finished_bars(out.getvalue())
    assert len(lines) == 1 and lines[0].startswith("first pass: 100%")


def test_part_that_stops_early_still_fills_its_share() -> None:
    root = Progress(True, file=io.StringIO())
    with root.stage("final pass", 2) as bar:
        with bar.stage("refining", 10):
            pass  # nothing to refine: a cached result
        assert bar._display.bar.n == pytest.approx(1.0)
        with bar.stage("weighted", 5, share=0.5) as part:
            part.advance(5)
        assert bar._display.bar.n == pytest.approx(1.5)


def test_a_stage_that_fails_leaves_no_bar_open() -> None:
    root = Progress(True, file=io.StringIO())
    with pytest.raises(RuntimeError):
        with root.stage("reading", 5):
            raise RuntimeError("stop")
    assert root._display.bar is None
    with root.stage("features", 1):
        pass
    assert root.opened == ["reading", "features"]


def test_off_draws_nothing_and_accepts_bools() -> None:
    out = io.StringIO()
    quiet = Progress(False, file=out)
    with quiet.stage("first pass", 3) as bar:
        with bar.stage("blocks", 2) as part:
            part.advance()
    assert out.getvalue() == "" and quiet.opened == [] and not quiet
    assert Progress.of(quiet) is quiet
    assert Progress.of(True).enabled and not Progress.of(False).enabled and not Progress.of(None).enabled


def test_pair_minima_reports_into_the_open_stage_and_keeps_its_numbers() -> None:
    x = unit_features(9, 16, 8)
    plain = pair_minima(x, budget_mb=0.001)  # several image blocks
    out = io.StringIO()
    root = Progress(True, file=out)
    with root.stage("first pass", 2, "maps") as bar:
        a = pair_minima(x, budget_mb=0.001, progress=bar, desc="first pass layer 1 r=1")
        b = pair_minima(x, budget_mb=0.001, progress=bar, desc="first pass layer 1 r=3")
    assert root.opened == ["first pass"]
    assert "layer" not in out.getvalue()
    assert torch.equal(a.dist, plain.dist) and torch.equal(b.dist, plain.dist)


@pytest.mark.parametrize("subsets, bars", [(1, ["first pass", "graph", "final pass"]), (2, ["scoring"])])
def test_codegraph_draws_one_bar_per_stage_and_scores_alike(subsets: int, bars: list[str]) -> None:
    from codegraph_ad.methods import CoDeGraph, MuSc

    g = torch.Generator().manual_seed(3)
    layers = torch.randn(12, 2, 4, 4, 16, generator=g)
    cls = torch.randn(12, 16, generator=g)
    quiet = CoDeGraph(subsets=subsets, rscin=False).fit_predict(layers, cls=cls)
    out = io.StringIO()
    root = Progress(True, file=out)
    shown = CoDeGraph(subsets=subsets, rscin=False, progress=root).fit_predict(layers, cls=cls)
    assert root.opened == bars
    assert len(finished_bars(out.getvalue())) == len(bars)
    assert all(line.split(":")[1].lstrip().startswith("100%") for line in finished_bars(out.getvalue()))
    assert torch.equal(quiet.patch_scores, shown.patch_scores)
    musc = Progress(True, file=io.StringIO())
    MuSc(subsets=subsets, rscin=False, progress=musc).fit_predict(layers, cls=cls)
    assert musc.opened == ["scoring"]
