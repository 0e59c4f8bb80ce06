"""Model files: ``model.safetensors`` + ``config.json``; never pickle.

A corrupt or mismatched checkpoint (bad JSON, a missing field, missing or unexpected tensors,
wrong shapes, an unreadable tensor file) raises :class:`CheckpointError` naming what is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

__all__ = ["CheckpointError", "save_checkpoint", "read_config", "load_state"]

CONFIG = "config.json"
WEIGHTS = "model.safetensors"


class CheckpointError(ValueError):
    """The checkpoint at a path cannot be used; the message says why."""


def save_checkpoint(path: str | Path, kind: str, config: dict[str, Any], module: torch.nn.Module) -> Path:
    d = Path(path)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    save_file(tensors, str(d / WEIGHTS))
    (d / CONFIG).write_text(json.dumps({"kind": kind, "version": 1, "config": config}, indent=2))
    return d


def read_config(path: str | Path, kind: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    f = Path(path) / CONFIG
    if not f.is_file():
        raise CheckpointError(f"{path}: no {CONFIG}")
    try:
        doc = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{f}: bad JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("kind") != kind or not isinstance(doc.get("config"), dict):
        raise CheckpointError(f"{f}: not a '{kind}' checkpoint (fields 'kind'/'config')")
    cfg = doc["config"]
    missing = [k for k in required if k not in cfg]
    if missing:
        raise CheckpointError(f"{f}: config missing field(s) {missing}")
    return cfg


def load_state(path: str | Path, module: torch.nn.Module) -> None:
    """Load weights into ``module``, checking names and shapes first."""
    f = Path(path) / WEIGHTS
    if not f.is_file():
        raise CheckpointError(f"{path}: no {WEIGHTS}")
    try:
        state = load_file(str(f))
    except Exception as e:  # safetensors raises its own error types for truncated/garbled files
        raise CheckpointError(f"{f}: unreadable tensor file ({e})") from None
    want = module.state_dict()
    missing = sorted(set(want) - set(state))
    extra = sorted(set(state) - set(want))
    if missing or extra:
        raise CheckpointError(f"{f}: missing tensors {missing[:5]}, unexpected tensors {extra[:5]}")
    for k, v in want.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{f}: tensor '{k}' has shape {tuple(state[k].shape)}, model expects {tuple(v.shape)}")
    module.load_state_dict(state)
