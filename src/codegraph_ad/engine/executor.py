"""Where the engine's pair tasks run: in this process, or on a cluster (Ray, issue 25).

The engine cuts each (layer, degree) map into independent tasks (blocks of image pairs),
each a pure function of the shared features and a small task descriptor whose result is a
set of finished slot rows. Results are merged by slot, each slot written by exactly one
task, so the order in which an executor returns them cannot change a score: the local and
the distributed runs give identical arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import torch

T = TypeVar("T")


@dataclass
class SlotRows:
    """Finished minima rows: ``values[r]`` is the best similarity of patch row ``(queries[r],
    slots[r], :)``; ``args`` the index of that nearest patch (or None)."""

    queries: torch.Tensor
    slots: torch.Tensor
    values: torch.Tensor
    args: torch.Tensor | None


class Executor(Protocol):
    """Runs ``fn(shared, task)`` for every task and yields the results in any order."""

    def map(self, fn: Callable[[Any, T], list[SlotRows]], shared: Any,
            tasks: Sequence[T]) -> Iterator[list[SlotRows]]: ...


class LocalExecutor:
    """In this process, in task order (the default engine)."""

    def map(self, fn: Callable[[Any, T], list[SlotRows]], shared: Any,
            tasks: Sequence[T]) -> Iterator[list[SlotRows]]:
        for task in tasks:
            yield fn(shared, task)


LOCAL = LocalExecutor()
