"""A trained per-image model on disk: one file holding the state dict and its JSON config.

``torch.save`` of plain containers (tensors, strings, numbers), written atomically and read
back with ``weights_only=True``, so loading a model file never executes code from it.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from codegraph_ad.errors import InputError
from codegraph_ad.io.atomic import atomic_write

FORMAT = "codegraph-ad-model"
VERSION = 1


@dataclass
class ModelFile:
    """kind: which model ("patch_head", "aprilgan", "anomalyclip"); config: JSON-able dict."""

    kind: str
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]


def save_model(path: str | Path, model: ModelFile) -> Path:
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": model.kind,
        "config_json": json.dumps(model.config, sort_keys=True),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict.items()},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write(path, lambda fh: fh.write(buf.getvalue()))


def load_model(path: str | Path) -> ModelFile:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: model file does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{path}: not a codegraph-ad model file ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(f"{path}: not a codegraph-ad model file (no '{FORMAT}' marker)")
    if payload.get("version") != VERSION:
        raise InputError(f"{path}: model file version {payload.get('version')} is not supported (expected {VERSION})")
    return ModelFile(str(payload["kind"]), json.loads(payload["config_json"]), dict(payload["state_dict"]))
