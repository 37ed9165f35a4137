"""Lazy imports of timm and open_clip, which are optional and only needed for official weights.

Both import torchvision at import time. The torchvision wheels on PyPI are CUDA builds; beside
a CPU-only torch their compiled ops (``torchvision._C``) cannot load. torchvision expects that
case and skips registering those ops, except for two fake-tensor registrations
(``torchvision::nms`` and ``torchvision::qnms`` in ``torchvision/_meta_registrations.py``) that
are not guarded and raise ``RuntimeError: operator torchvision::nms does not exist``.

Only in that situation, ``ensure_torchvision`` declares the two missing operator schemas (with
a CPU kernel that raises a clear error) and imports torchvision again. Everything timm and
open_clip use from torchvision (transforms, ``ops.misc``) is pure Python and works; only the
compiled ops (NMS, RoI ops, image decoding) stay unavailable, as they already were. When
torchvision's own ops load (a matching CPU build), nothing is patched.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from types import ModuleType

import torch

_INSTALL_HINT = (
    "official-weight backbones need timm and open_clip: "
    "pip install 'timm>=1.0,<2' 'open_clip_torch>=2.24,<4' and a torchvision matching torch "
    f"{torch.__version__.split('+')[0]} (for torch 2.13: pip install --no-deps torchvision==0.28.0)"
)
_MISSING_OPS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_fragment: torch.library.Library | None = None  # kept alive: a Library unregisters when freed
patched_torchvision = False  # True once the stand-in schemas were declared in this process


def _unavailable(*args: object, **kwargs: object) -> torch.Tensor:
    raise RuntimeError(
        "torchvision's compiled ops could not be loaded beside this torch build (CPU torch with a "
        "CUDA torchvision wheel); codegraph_ad declared this op only so torchvision can be imported"
    )


def _declare_missing_ops() -> None:
    global _fragment, patched_torchvision
    missing = {k: v for k, v in _MISSING_OPS.items() if not hasattr(torch.ops.torchvision, k)}
    if not missing:
        return
    _fragment = _fragment or torch.library.Library("torchvision", "FRAGMENT")
    for name, schema in missing.items():
        _fragment.define(schema)
        _fragment.impl(name, _unavailable, "CPU")
    patched_torchvision = True


def ensure_torchvision() -> ModuleType:
    """Import torchvision, declaring the two unguarded op schemas only if its ops cannot load."""
    try:
        return importlib.import_module("torchvision")
    except ModuleNotFoundError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    except RuntimeError as exc:
        if "torchvision::" not in str(exc) or "does not exist" not in str(exc):
            raise
    for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[mod]  # drop the half-imported package before trying again
    _declare_missing_ops()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Failed to load image Python extension")
        return importlib.import_module("torchvision")


def import_timm() -> ModuleType:
    """``timm``, importable even when torchvision's compiled ops cannot load (see module doc)."""
    ensure_torchvision()
    try:
        return importlib.import_module("timm")
    except ModuleNotFoundError as exc:
        raise ImportError(_INSTALL_HINT) from exc


def import_open_clip() -> ModuleType:
    """``open_clip``, importable even when torchvision's compiled ops cannot load."""
    ensure_torchvision()
    try:
        return importlib.import_module("open_clip")
    except ModuleNotFoundError as exc:
        raise ImportError(_INSTALL_HINT) from exc
