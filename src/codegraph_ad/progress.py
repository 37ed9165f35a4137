"""One progress display for a run: one bar per stage, advanced by the loops inside it.

A run has a few stages a person can follow (reading, features, first pass, graph, final
pass, writing); the work inside them (layers x degrees x image blocks) is detail. A stage
opens one bar with its total work units; the functions it calls receive the stage and open
*nested* parts of it, which advance the stage's bar instead of opening bars of their own:

    progress = Progress.of(True)
    with progress.stage("first pass", total=n_maps, unit="map") as bar:
        for ...:
            pair_minima(feats, progress=bar)   # its blocks fill one map of the bar

The same function called with the root (or ``True``) opens its own bar, so a lone call
still shows progress, and with ``False`` nothing is drawn.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

# Percent and ETA only: nested parts advance a stage by fractions, whose counts mean nothing
# to a reader; the total says what the stage is made of.
_BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {total:.0f} {unit} [{elapsed}<{remaining}]"


@dataclass
class _Display:
    """What every view of one run shares: whether to draw, where, and the bar now open."""

    enabled: bool
    file: TextIO | None
    bar: Any = None  # the open stage's tqdm bar, or None
    opened: list[str] = field(default_factory=list)  # names of every stage bar opened, in order


class Progress:
    """Where a run reports how far it is (see the module docstring).

    The root (``Progress.of(True)``) is outside any stage: ``stage`` on it opens a bar. A
    view returned by ``stage`` is inside one: ``advance`` moves the bar, and ``stage`` on it
    opens a part that fills ``share`` of its advances when its own ``total`` is done.
    """

    def __init__(self, enabled: bool = True, file: TextIO | None = None) -> None:
        self._display = _Display(bool(enabled), file)
        self._weight = 1.0  # bar units that one ``advance(1)`` of this view is worth
        self._inside = False
        self._done = 0.0  # bar units this view has advanced (parts top up to their share)

    @classmethod
    def of(cls, progress: bool | Progress | None) -> Progress:
        """A Progress from what callers pass: a Progress itself, or a bool (None: off)."""
        return progress if isinstance(progress, Progress) else cls(bool(progress))

    @property
    def enabled(self) -> bool:
        return self._display.enabled

    def __bool__(self) -> bool:
        """True when drawing, so code that still treats ``progress`` as a bool stays right."""
        return self._display.enabled

    @property
    def opened(self) -> list[str]:
        """The names of the bars this run opened so far (one per stage; tests read it)."""
        return list(self._display.opened)

    def _view(self, weight: float) -> Progress:
        view = Progress.__new__(Progress)
        view._display, view._weight, view._inside, view._done = self._display, weight, True, 0.0
        return view

    @contextmanager
    def stage(self, name: str, total: float, unit: str = "step", share: float = 1.0) -> Iterator[Progress]:
        """A stage of ``total`` units: its own bar from the root, else ``share`` advances of
        the enclosing stage spread over ``total`` steps. Leaving it completes it."""
        total = max(float(total), 0.0)
        if self._inside:
            part_units = share * self._weight
            view = self._view(part_units / total if total > 0 else 0.0)
            try:
                yield view
            finally:
                rest = max(part_units - view._done, 0.0)  # a part that did fewer steps still fills its share
                self._bump(rest)
                self._done += view._done + rest
            return
        display = self._display
        if not display.enabled:
            yield self._view(0.0)
            return
        from tqdm.auto import tqdm

        display.opened.append(name)
        bar = tqdm(total=total, desc=name, unit=unit, leave=True, file=display.file or sys.stderr,
                   bar_format=_BAR_FORMAT, dynamic_ncols=True)
        outer, display.bar = display.bar, bar
        view = self._view(1.0)
        try:
            yield view
            if bar.n < total:
                bar.update(total - bar.n)
        finally:
            bar.close()
            display.bar = outer

    def advance(self, n: float = 1.0) -> None:
        """``n`` steps of this view's stage (a part's steps count for their share)."""
        if not self._inside or n <= 0:
            return
        units = n * self._weight
        self._done += units
        self._bump(units)

    def _bump(self, units: float) -> None:
        bar = self._display.bar
        if bar is not None and units > 0:
            bar.update(min(units, max(bar.total - bar.n, 0.0)))
