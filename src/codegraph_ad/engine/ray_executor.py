"""The Ray backend of the engine (issue 25, docs/ray.md): the same tasks, run on a cluster.

The engine cuts every (layer, degree) map into pure tasks (engine/executor.py); here they run
as Ray tasks. The shared context (the map's prepared features) is placed once in the object
store per map, with every tensor as a flat byte array, so each worker on a node maps it
without a copy (pickle 5 buffers). Engine tasks are grouped into a few Ray tasks per worker,
so scheduling costs stay small next to the products, and the results come back to the
driver as they finish, where ``mutual._run_tasks`` writes each slot once: the order cannot
change a score, and the Ray run gives the local run's arrays bit for bit.

MuSc goes one step further (``RayExecutor.shard_scores``): the map's minima are held by query
shards, actors that each own a range of query images, and only their MSM scores come back, so
the driver never holds an ``(N, S, M)`` array (docs/ray.md).

A task whose worker dies is run again (``max_retries``); Ctrl-C cancels every task still
queued or running, then the interrupt goes on (the run folder writes nothing partial).
Ray is imported only when a Ray run starts: the package works without it.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import socket
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from codegraph_ad.config import EngineConfig
from codegraph_ad.engine.executor import LOCAL, Executor, SlotRows
from codegraph_ad.engine.msm import msm_scores_to_references
from codegraph_ad.errors import CodegraphError, ConfigError

T = TypeVar("T")
INSTALL_HINT = 'pip install "codegraph-ad[ray]"'
# How long a host:port address may take to answer before the run gives up: Ray itself
# retries an unreachable head for minutes.
CONNECT_TIMEOUT_S = 5.0


# Rows a query shard receives per call: one call per task and shard made MuSc on Ray 1.59x the
# local time on bottle at 224 px (2 CPUs, about 5,500 actor calls per run); the driver holds at
# most this much per shard in passing.
SHARD_WRITE_BYTES = 8 << 20


class RayBackendError(CodegraphError):
    """The cluster could not run a task (after its retries); one line, no traceback."""


def require_ray() -> Any:
    """The ``ray`` module, or an error that names the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"the Ray backend (--engine ray) needs Ray, which is not installed ({exc}); "
                          f"install it with: {INSTALL_HINT}") from None
    return ray


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _probe(address: str) -> None:
    """Fail fast on a ``host:port`` (or ``ray://host:port``) nobody answers."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return  # not host:port: Ray reads it ("auto", a file, ...) and says what is wrong
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {_first_line(exc)}") from None


def connect(address: str | None = None, num_cpus: int | None = None) -> Any:
    """Ray, joined to a cluster once per process: the one this process already joined (a test,
    a notebook), else a new local instance (``address`` None; ``num_cpus``: its CPUs, None:
    all), else the cluster at ``address`` (``auto``, ``host:port`` or ``ray://host:port``)."""
    ray = require_ray()
    if address is not None:
        _probe(address)  # also when joined already: an address nobody answers is the user's to know
    if ray.is_initialized():
        return ray
    try:
        if address is None:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False)
        else:
            ray.init(address=address)
    except Exception as exc:  # noqa: BLE001 - every way of failing becomes one line
        where = "a local Ray instance" if address is None else f"the Ray cluster at {address}"
        raise ConfigError(f"cannot reach {where}: {_first_line(exc)}") from None
    return ray


# -- moving tensors through the object store ----------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Bytes:
    """A tensor as a flat uint8 array: pickled out of band, so a worker maps it, not copies it."""

    data: np.ndarray
    dtype: str
    shape: tuple[int, ...]


def pack(obj: Any) -> Any:
    """``obj`` with every tensor (in tuples, lists, dicts and dataclasses) as ``_Bytes``."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        return _Bytes(t.reshape(-1).view(torch.uint8).numpy(), str(t.dtype).removeprefix("torch."), tuple(t.shape))
    if isinstance(obj, (tuple, list)):
        return type(obj)(pack(x) for x in obj)
    if isinstance(obj, dict):
        return {k: pack(v) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = copy.copy(obj)
        for f in dataclasses.fields(obj):
            object.__setattr__(out, f.name, pack(getattr(obj, f.name)))
        return out
    return obj


def unpack(obj: Any, device: str = "cpu") -> Any:
    """Inverse of ``pack``; tensors on ``device``. On the CPU they are read-only views of the
    object store (the task functions only read their context)."""
    if isinstance(obj, _Bytes):
        with warnings.catch_warnings():  # a view of the read-only store: nothing writes to it
            warnings.simplefilter("ignore", UserWarning)
            t = torch.from_numpy(obj.data)
        t = t.view(getattr(torch, obj.dtype)).reshape(obj.shape)
        return t if device == "cpu" else t.to(device)
    if isinstance(obj, (tuple, list)):
        return type(obj)(unpack(x, device) for x in obj)
    if isinstance(obj, dict):
        return {k: unpack(v, device) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = copy.copy(obj)
        for f in dataclasses.fields(obj):
            object.__setattr__(out, f.name, unpack(getattr(obj, f.name), device))
        return out
    return obj


def run_batch(fn: Callable[[Any, Any], Any], shared: Any, tasks: list[Any], threads: int, device: str) -> list[Any]:
    """One Ray task: engine tasks ``tasks`` in a row, on the worker's share of the CPU
    (``threads``, so that workers on one machine do not oversubscribe its cores)."""
    torch.set_num_threads(max(1, threads))
    ctx = unpack(shared, device)
    return [pack(fn(ctx, task)) for task in tasks]


_REMOTE: Any = None


def _remote_batch(ray: Any) -> Any:
    global _REMOTE
    if _REMOTE is None:
        _REMOTE = ray.remote(run_batch)
    return _REMOTE


class RayExecutor:
    """Runs the engine's tasks on a Ray cluster (the ``Executor`` of engine/executor.py).

    address: the cluster (None: start a local instance with ``num_cpus`` CPUs; ``auto``: the
        running cluster; ``host:port``). cpus_per_task / gpus_per_task: what one Ray task
        holds; with a GPU the task's tensors move to it. batches_per_worker: Ray tasks per
        worker slot per map (None: one per engine task). max_retries: reruns of a task whose
        worker died. in_flight_per_worker: tasks submitted ahead per worker slot, which
        bounds what waits in the object store (feature chunks carry their images).
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None, cpus_per_task: float = 1,
                 gpus_per_task: float = 0, batches_per_worker: int | None = 4, max_retries: int = 3,
                 in_flight_per_worker: int = 2) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.cpus_per_task = cpus_per_task
        self.gpus_per_task = gpus_per_task
        self.batches_per_worker = batches_per_worker
        self.max_retries = max_retries
        self.in_flight_per_worker = in_flight_per_worker

    def workers(self) -> int:
        """How many of this executor's tasks the cluster runs at once."""
        ray = connect(self.address, self.num_cpus)
        resources = ray.cluster_resources()
        slots = [resources.get("CPU", 1.0) / self.cpus_per_task] if self.cpus_per_task > 0 else []
        if self.gpus_per_task > 0:
            slots.append(resources.get("GPU", 0.0) / self.gpus_per_task)
        return max(1, int(min(slots)) if slots else 1)

    def map(self, fn: Callable[[Any, T], Any], shared: Any, tasks: Sequence[T]) -> Iterator[Any]:
        if len(tasks) == 0:
            return
        ray = connect(self.address, self.num_cpus)
        workers = self.workers()
        per_worker = self.batches_per_worker
        n_batches = len(tasks) if per_worker is None else min(len(tasks), per_worker * workers)
        bounds = np.linspace(0, len(tasks), n_batches + 1).round().astype(int)
        threads = max(1, math.floor(self.cpus_per_task))
        device = "cuda" if self.gpus_per_task > 0 else "cpu"
        remote = _remote_batch(ray).options(num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task,
                                            max_retries=self.max_retries, retry_exceptions=False)
        shared_ref = ray.put(pack(shared))  # once per map: every task of every worker reads it
        pending: list[Any] = []
        submitted = 0
        try:
            while submitted < n_batches or pending:
                while submitted < n_batches and len(pending) < self.in_flight_per_worker * workers:
                    batch = [tasks[i] for i in range(bounds[submitted], bounds[submitted + 1])]
                    pending.append(remote.remote(fn, shared_ref, batch, threads, device))
                    submitted += 1
                done, pending = ray.wait(pending, num_returns=1)
                for result in self._get(ray, done[0]):
                    yield unpack(result)
        finally:  # Ctrl-C, an error, or a consumer that stopped early: nothing keeps running
            for ref in pending:
                try:
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001 - it may have finished meanwhile
                    pass

    def shard_scores(self, job: Any, q: float, progress: Any = False, desc: str = "mutual scoring") -> torch.Tensor:
        """MSM scores ``(N, M)`` of one map (``mutual.plan_job``), its minima held by query
        shards on the cluster: the driver sees each task's rows in passing, never the map."""
        ray = connect(self.address, self.num_cpus)
        for attempt in range(self.max_retries + 1):
            shards, bounds = self.query_shards(job.layout.n, fresh=attempt > 0)
            try:
                self.fill_shards(shards, bounds, job, progress, desc)
                parts = ray.get([a.scores.remote(q) for a in shards])
                return torch.cat([unpack(p) for p in parts])
            except ray.exceptions.RayActorError as exc:  # a shard's worker died: its minima are gone
                if attempt == self.max_retries:
                    raise RayBackendError(f"a query shard of the Ray run died {attempt + 1} times: "
                                          f"{_first_line(exc)}") from None
        raise AssertionError("unreachable")

    def query_shards(self, n: int, fresh: bool = False, kind: type | None = None) -> tuple[list[Any], np.ndarray]:
        """Shard actors of class ``kind`` (default ``QueryShard``), one per worker slot and at
        most one per query, and the query range bounds they own (shard i: ``bounds[i]:bounds[i + 1]``)."""
        ray = connect(self.address, self.num_cpus)
        count = max(1, min(n, self.workers()))
        bounds = np.linspace(0, n, count + 1).round().astype(int)
        return self._query_shards(ray, count, fresh, kind or QueryShard), bounds

    def fill_shards(self, shards: list[Any], bounds: np.ndarray, job: Any, progress: Any = False,
                    desc: str = "mutual scoring", key: Any = None) -> None:
        """Run one map's pair tasks, routing each task's slot rows to the shards that own their
        queries (in calls of up to ``SHARD_WRITE_BYTES``). key: the shards keep the finished
        map under it (``FirstPassShard.seal``); None leaves it open for ``scores``."""
        from codegraph_ad.progress import Progress

        ray = connect(self.address, self.num_cpus)
        count = len(shards)
        layout_ref = ray.put(pack(job.layout))
        ray.get([a.open.remote(layout_ref, int(bounds[i]), int(bounds[i + 1])) for i, a in enumerate(shards)])
        inner = torch.as_tensor(bounds[1:-1], dtype=torch.long)
        writes: list[Any] = []
        held: dict[int, list[Any]] = {}
        held_bytes = [0] * count

        def send(sid: int) -> None:
            writes.append(shards[sid].write.remote(pack(held.pop(sid))))
            held_bytes[sid] = 0

        with Progress.of(progress).stage(desc, len(job.tasks), "blocks") as bar:
            for rows in self.map(job.fn, job.ctx, job.tasks):
                for sid, part in _split_rows(rows, inner).items():
                    held.setdefault(sid, []).extend(part)
                    held_bytes[sid] += sum(r.values.numel() * r.values.element_size() for r in part)
                    if held_bytes[sid] >= SHARD_WRITE_BYTES:  # few, large actor calls
                        send(sid)
                if len(writes) > 4 * count:  # bound what waits in the object store
                    done, writes = ray.wait(writes, num_returns=len(writes) - 2 * count)
                    ray.get(done)
                bar.advance()
        for sid in list(held):
            send(sid)
        ray.get(writes)
        if key is not None:
            ray.get([a.seal.remote(key) for a in shards])

    def _query_shards(self, ray: Any, count: int, fresh: bool = False, kind: type | None = None) -> list[Any]:
        """``count`` shard actors of class ``kind``, kept between maps and runs (starting one
        costs a process); ``fresh`` replaces them (their minima died with one of them)."""
        kind = kind or QueryShard
        pools: dict[str, list[Any]] = self.__dict__.setdefault("_pools", {})
        name = kind.__qualname__
        if fresh:
            for a in pools.get(name, []):
                try:
                    ray.kill(a)
                except Exception:  # noqa: BLE001 - it may be dead already
                    pass
            pools[name] = []
        shards = pools.setdefault(name, [])
        if len(shards) < count:
            actor = ray.remote(num_cpus=0, max_restarts=0)(kind).options(scheduling_strategy="SPREAD")
            shards.extend(actor.remote() for _ in range(count - len(shards)))
        if kind is QueryShard:
            self._shards = shards  # the MuSc shards, as the tests and benchmarks name them
        return shards[:count]

    def _get(self, ray: Any, ref: Any) -> list[Any]:
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, CodegraphError):  # the worker's own one-line error (e.g. no backbone)
                raise cause from None
            raise
        except ray.exceptions.RayError as exc:  # a worker or node that died more often than retried
            raise RayBackendError(f"a Ray task failed after {self.max_retries} retries: {_first_line(exc)}") from None


class QueryShard:
    """A Ray actor holding the minima of one range of queries ``q0:q1`` of the map being scored,
    so that MuSc's ``(N, S, M)`` minima live spread over the cluster, never on the driver: the
    pair tasks' slot rows are written here, and only the range's ``(q1 - q0, M)`` MSM scores go
    back. One map at a time: ``open`` forgets the previous one."""

    def __init__(self) -> None:
        torch.set_num_threads(1)  # it writes rows and sorts once per map; the tasks need the cores
        self.layout: Any = None
        self.sim: torch.Tensor | None = None
        self.arg: torch.Tensor | None = None
        self.q0 = 0

    def open(self, layout: Any, q0: int, q1: int) -> None:
        self.layout = unpack(layout)
        self.q0 = q0
        self.sim, self.arg = self.layout.empty(q1 - q0)

    def write(self, rows: Any) -> None:
        for r in unpack(rows):
            q = r.queries.long() - self.q0
            self.sim[q, r.slots.long()] = r.values.to(self.sim.dtype)
            if self.arg is not None and r.args is not None:
                self.arg[q, r.slots.long()] = r.args.to(self.arg.dtype)

    def scores(self, q: float) -> Any:
        dist, _ = self.layout.finish(self.sim, self.arg, self.q0)
        self.sim = self.arg = None
        allowed = None
        if self.layout.dense and self.layout.refs is None:  # each query's own slot is no reference
            rows = torch.arange(dist.shape[0])
            allowed = torch.ones(dist.shape[:2], dtype=torch.bool)
            allowed[rows, rows + self.q0] = False
        return pack(msm_scores_to_references(dist, q, allowed))


def _split_rows(rows: list[Any], bounds: torch.Tensor) -> dict[int, list[Any]]:
    """Slot rows grouped by the query shard (``bounds``: its first queries after shard 0) they belong to."""
    out: dict[int, list[Any]] = {}
    for r in rows:
        shard = torch.bucketize(r.queries.long(), bounds, right=True)
        for sid in torch.unique(shard).tolist():
            keep = shard == sid
            out.setdefault(int(sid), []).append(
                SlotRows(r.queries[keep], r.slots[keep], r.values[keep], None if r.args is None else r.args[keep]))
    return out


_EXECUTORS: dict[tuple[str | None, float], RayExecutor] = {}


def executor_for(engine: EngineConfig) -> Executor:
    """Where a run's pair tasks go: this process (``backend="local"``) or a Ray cluster, one
    executor per address (the connection is made when the first task is submitted).
    ``device="cuda"`` gives each Ray task a GPU of its worker."""
    if engine.backend == "local":
        return LOCAL
    gpus = 1.0 if engine.device == "cuda" else 0.0
    key = (engine.ray_address, gpus)
    if key not in _EXECUTORS:
        _EXECUTORS[key] = RayExecutor(engine.ray_address, gpus_per_task=gpus)
    return _EXECUTORS[key]
