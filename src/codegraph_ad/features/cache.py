"""On-disk cache of backbone features, one entry per image, keyed by file content.

A rerun, or a run interrupted and restarted, extracts only the images the cache lacks.
The key is the SHA-256 of the file's bytes plus everything that changes the tokens
(backbone, image size, blocks, final norm, checkpoint, feature-format version and the
libraries that decode and run the model), so a renamed file hits and an edited one
misses. Entries are written atomically with a checksum; a damaged entry is reported,
deleted and recomputed, never used.

Entry layout (``<root>/<config key>/<hash[:2]>/<hash>.feat``)::

    MAGIC (8 bytes) | header length (4 bytes, little endian) | JSON header | payload

The header holds the shapes, the grid and the SHA-256 of the payload; the payload is the
``(L, M, C)`` float32 block tokens followed by the ``(C_cls,)`` float32 [CLS] vector.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codegraph_ad.config import FeatureConfig
from codegraph_ad.features.extract import FeatureSet, extract_features
from codegraph_ad.io.atomic import write_bytes, write_json
from codegraph_ad.progress import Progress

# Bump when decoding, resizing, normalisation or the token layout changes, so that
# entries written by older code are never mixed with new ones.
FEATURE_FORMAT_VERSION = 1
MAGIC = b"CGADFT01"
SUFFIX = ".feat"
_HEADER_LEN = struct.Struct("<I")
_log = logging.getLogger(__name__)


class CorruptEntryError(Exception):
    """A cache entry that cannot be trusted (truncated, checksum mismatch, wrong shape)."""


@dataclass(frozen=True)
class CacheConfig:
    """Where features are cached and whether to use the cache at all.

    enabled: None means "auto": on when the backbone is built from the configuration,
        off when the caller passes a backbone object (its weights cannot be identified,
        so its features must not be stored under a configuration's name).
    root: None means ``$CODEGRAPH_AD_CACHE/features``, else
        ``$XDG_CACHE_HOME/codegraph-ad/features``, else ``~/.cache/codegraph-ad/features``.
    """

    enabled: bool | None = None
    root: Path | None = None

    def active(self, backbone_given: bool) -> bool:
        return (not backbone_given) if self.enabled is None else bool(self.enabled)


@dataclass
class CacheStats:
    """What one run took from the cache; stored in the run's timings."""

    hits: int = 0
    extracted: int = 0
    corrupt: int = 0
    write_errors: int = 0
    backbone_calls: int = 0

    def as_timings(self) -> dict[str, float]:
        return {
            "features_cached": self.hits,
            "features_extracted": self.extracted,
            "features_cache_corrupt": self.corrupt,
        }


def default_cache_root() -> Path:
    """``$CODEGRAPH_AD_CACHE/features`` (the root shared with the backbone graph cache)."""
    env = os.environ.get("CODEGRAPH_AD_CACHE")
    if env:
        base = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "codegraph-ad"
    return base / "features"


def _library_versions() -> dict[str, str]:
    """Libraries whose version can change decoded pixels or token values."""
    import PIL

    out = {"torch": torch.__version__, "pillow": PIL.__version__, "numpy": np.__version__}
    try:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover - ORT is a dependency
        pass
    return out


def _checkpoint_identity(checkpoint: str | None) -> dict[str, Any] | None:
    """Path, size and modification time: a replaced weights file gets a new key."""
    if checkpoint is None:
        return None
    p = Path(checkpoint).expanduser()
    try:
        st = p.stat()
    except OSError:
        return {"path": str(p)}
    return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cache_key_fields(features: FeatureConfig, backbone: Any = None,
                     runtime: dict[str, str] | None = None) -> dict[str, Any]:
    """Everything besides the file's bytes that determines its features.

    ``batch_size`` is left out: it does not change the tokens of an image. A backbone
    object passed by the caller adds its class and name so that it never shares entries
    with the configuration's own backbone. ``runtime`` (where and in which precision the
    backbone ran, e.g. ``{"device": "cuda", "precision": "bf16"}``) is given only off the
    default CPU fp32 path: a GPU's or bf16's tokens differ in the last digits, and the
    CPU's keys stay what they were.
    """
    fields = {
        "format": FEATURE_FORMAT_VERSION,
        "backbone": features.backbone,
        "image_size": features.image_size,
        "layers": list(features.layers),
        "final_norm": features.final_norm,
        "checkpoint": _checkpoint_identity(features.checkpoint),
        "versions": _library_versions(),
    }
    if backbone is not None:
        cls = type(backbone)
        fields["backbone_object"] = {
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "name": str(getattr(backbone, "name", "")),
        }
    if runtime:
        fields["runtime"] = dict(runtime)
    return fields


def encode_entry(layers: np.ndarray, cls: np.ndarray, grid: tuple[int, int]) -> bytes:
    """``layers`` ``(L, M, C)`` and ``cls`` ``(C_cls,)`` -> the bytes of one entry."""
    layers = np.ascontiguousarray(layers, dtype=np.float32)
    cls = np.ascontiguousarray(cls, dtype=np.float32)
    payload = layers.tobytes() + cls.tobytes()
    header = json.dumps({
        "layers_shape": list(layers.shape),
        "cls_shape": list(cls.shape),
        "grid": list(grid),
        "dtype": "float32",
        "sha256": hashlib.sha256(payload).hexdigest(),
    }).encode("utf-8")
    return MAGIC + _HEADER_LEN.pack(len(header)) + header + payload


def decode_entry(data: bytes) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Inverse of ``encode_entry``; raises CorruptEntryError saying what is wrong."""
    if len(data) < len(MAGIC) + _HEADER_LEN.size or not data.startswith(MAGIC):
        raise CorruptEntryError("not a feature cache entry (bad magic bytes)")
    start = len(MAGIC) + _HEADER_LEN.size
    (n,) = _HEADER_LEN.unpack_from(data, len(MAGIC))
    try:
        header = json.loads(data[start:start + n].decode("utf-8"))
        ls, cs, grid = tuple(header["layers_shape"]), tuple(header["cls_shape"]), tuple(header["grid"])
        digest = header["sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptEntryError(f"unreadable header ({exc.__class__.__name__})") from exc
    payload = data[start + n:]
    want = 4 * (int(np.prod(ls)) + int(np.prod(cs)))
    if len(payload) != want:
        raise CorruptEntryError(f"payload is {len(payload)} bytes, header says {want} (truncated?)")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CorruptEntryError("checksum mismatch")
    if len(ls) != 3 or len(grid) != 2 or grid[0] * grid[1] != ls[1]:
        raise CorruptEntryError(f"inconsistent shapes {ls} and grid {grid}")
    split = 4 * int(np.prod(ls))
    layers = np.frombuffer(payload[:split], dtype=np.float32).reshape(ls)
    cls = np.frombuffer(payload[split:], dtype=np.float32).reshape(cs)
    return layers, cls, (int(grid[0]), int(grid[1]))


@dataclass
class FeatureCache:
    """The entries of one key configuration under ``root``; counts what it does in ``stats``."""

    root: Path
    key_fields: dict[str, Any]
    stats: CacheStats = field(default_factory=CacheStats)

    def __post_init__(self) -> None:
        digest = hashlib.sha256(json.dumps(self.key_fields, sort_keys=True).encode("utf-8")).hexdigest()
        self.dir = Path(self.root) / digest[:20]
        self._writable = True
        self._readable = True

    def path_for(self, content_hash: str) -> Path:
        return self.dir / content_hash[:2] / f"{content_hash}{SUFFIX}"

    def get(self, content_hash: str) -> tuple[np.ndarray, np.ndarray, tuple[int, int]] | None:
        """The entry, or None when absent or damaged (a damaged one is warned about and deleted)."""
        path = self.path_for(content_hash)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if self._readable:  # one warning per run, not one per image
                warnings.warn(f"{path}: cannot read the feature cache ({exc}); recomputing", stacklevel=2)
            self._readable = False
            return None
        try:
            return decode_entry(data)
        except CorruptEntryError as exc:
            self.stats.corrupt += 1
            warnings.warn(f"{path}: corrupt feature cache entry ({exc}); deleted and recomputing", stacklevel=2)
            try:
                path.unlink()
            except OSError:
                pass
            return None

    def put(self, content_hash: str, layers: np.ndarray, cls: np.ndarray, grid: tuple[int, int]) -> None:
        """Store one entry atomically; a full or read-only disk only warns (the run goes on)."""
        if not self._writable:
            return
        try:
            if not (self.dir / "key.json").exists():
                write_json(self.dir / "key.json", self.key_fields)  # for humans clearing the cache
            write_bytes(self.path_for(content_hash), encode_entry(layers, cls, grid))
        except OSError as exc:
            self._writable = False
            self.stats.write_errors += 1
            warnings.warn(f"{self.dir}: cannot write the feature cache ({exc}); continuing without it",
                          stacklevel=2)


def open_cache(features: FeatureConfig, cache: CacheConfig, backbone: Any = None,
               runtime: dict[str, str] | None = None) -> FeatureCache:
    root = Path(cache.root).expanduser() if cache.root is not None else default_cache_root()
    return FeatureCache(root, cache_key_fields(features, backbone, runtime))


ChunkRunner = Callable[[Callable[[int], np.ndarray], list[list[int]]], Iterable[tuple[list[int], FeatureSet]]]
"""``run(load, chunks)`` -> ``(chunk, its features)`` per chunk of image indices, in any order."""


def _local_chunks(backbone: Any) -> ChunkRunner:
    def run(load: Callable[[int], np.ndarray], chunks: list[list[int]]) -> Iterator[tuple[list[int], FeatureSet]]:
        for chunk in chunks:
            yield chunk, extract_features(backbone, lambda j: load(chunk[j]), len(chunk), len(chunk), progress=False)

    return run


def cached_features(
    store: FeatureCache,
    hashes: Sequence[str],
    load: Callable[[int], np.ndarray],
    get_backbone: Callable[[], Any],
    batch_size: int = 8,
    progress: bool | Progress = True,
    run_chunks: ChunkRunner | None = None,
) -> FeatureSet:
    """Features of images ``0..len(hashes)-1``, extracting only those the cache lacks.

    Missing images (byte-identical files once) go through the backbone ``batch_size`` at a
    time and each batch is stored as soon as it is done, so an interrupted run keeps
    what it finished. ``get_backbone`` is called only when something is missing.
    run_chunks: where the chunks run (None: here, in order, with ``get_backbone()``; the Ray
    extractor runs them on a cluster and hands back the same features).
    """
    if not hashes:
        raise ValueError("no images to extract features from")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive number of images, got {batch_size}")
    found: dict[str, tuple[np.ndarray, np.ndarray, tuple[int, int]]] = {}
    first_index: dict[str, int] = {}
    for i, h in enumerate(hashes):
        first_index.setdefault(h, i)
    for h in first_index:
        entry = store.get(h)
        if entry is not None:
            found[h] = entry
    missing = [i for h, i in first_index.items() if h not in found]
    store.stats.hits += len(first_index) - len(missing)
    if missing:
        chunks = [missing[start:start + batch_size] for start in range(0, len(missing), batch_size)]
        run = run_chunks if run_chunks is not None else _local_chunks(get_backbone())
        with Progress.of(progress).stage("features", len(missing), "img") as bar:
            for chunk, fs in run(load, chunks):
                store.stats.backbone_calls += 1
                for j, i in enumerate(chunk):
                    entry = (fs.layers[j].numpy(), fs.cls[j].numpy(), fs.grid)
                    store.put(hashes[i], *entry)
                    found[hashes[i]] = entry
                store.stats.extracted += len(chunk)
                bar.advance(len(chunk))
    grids = {found[h][2] for h in first_index}
    if len(grids) != 1:
        raise RuntimeError(f"{store.dir}: cache entries disagree on the patch grid {sorted(grids)}; "
                           "delete this folder and rerun")
    layers = torch.from_numpy(np.stack([found[h][0] for h in hashes]))
    cls = torch.from_numpy(np.stack([found[h][1] for h in hashes]))
    _log.info("features: %d image(s) from the cache, %d extracted", store.stats.hits, store.stats.extracted)
    return FeatureSet(layers, cls, grids.pop())

