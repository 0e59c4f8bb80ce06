"""Shared checks and artifact I/O for the content stage.

Every public entry point validates its inputs here so that bad input fails with one
kind of error (:class:`ContentError`, a ``ValueError``) whose message names the field.
Artifacts are a folder with ``config.json`` + ``weights.safetensors``; never pickle.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ContentError",
    "check_texts",
    "check_matrix",
    "l2_normalise",
    "save_artifact",
    "load_artifact",
]


class ContentError(ValueError):
    """Bad input to a content component, or a corrupt/mismatched artifact; names the field."""


def check_texts(texts: object, field: str = "texts", allow_empty_list: bool = False) -> list[str]:
    """A list of strings, or :class:`ContentError` naming ``field`` and the bad row."""
    if isinstance(texts, str | bytes):
        raise ContentError(f"{field}: expected a list of strings, got a single {type(texts).__name__}")
    if not isinstance(texts, Sequence | np.ndarray):
        raise ContentError(f"{field}: expected a list of strings, got {type(texts).__name__}")
    out = list(texts)
    if not out and not allow_empty_list:
        raise ContentError(f"{field}: empty list (need at least one text)")
    for i, t in enumerate(out):
        if t is None:
            raise ContentError(f"{field}[{i}]: is None (use '' for a note without text)")
        if not isinstance(t, str):
            raise ContentError(f"{field}[{i}]: expected str, got {type(t).__name__}")
    return out


def check_matrix(x: object, field: str, dim: int | None = None, rows: int | None = None) -> np.ndarray:
    """(n, d) finite float32 array, or :class:`ContentError` naming ``field``."""
    try:
        a = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise ContentError(f"{field}: not a numeric array ({e})") from None
    if a.ndim != 2:
        raise ContentError(f"{field}: expected a 2-d array (n, d), got shape {a.shape}")
    if dim is not None and a.shape[1] != dim:
        raise ContentError(f"{field}: expected dimension {dim}, got {a.shape[1]} (shape {a.shape})")
    if rows is not None and a.shape[0] != rows:
        raise ContentError(f"{field}: expected {rows} rows, got {a.shape[0]}")
    if not np.isfinite(a).all():
        r = int(np.flatnonzero(~np.isfinite(a).all(axis=1))[0])
        raise ContentError(f"{field}: NaN or inf in row {r}")
    return a


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit norm; all-zero rows stay zero. (n, d) -> (n, d) float32."""
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, eps)).astype(np.float32)


def save_artifact(folder: str | Path, kind: str, config: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> Path:
    """Write ``config.json`` (with ``kind``) and ``weights.safetensors`` into ``folder``."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"kind": kind, "format_version": 1, **dict(config)}
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(folder / "weights.safetensors"))
    (folder / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True), encoding="utf-8")
    return folder


def load_artifact(
    folder: str | Path, kind: str, expected: Mapping[str, tuple[int, ...] | None]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read an artifact written by :func:`save_artifact` and check kind, keys and shapes.

    ``expected`` maps tensor name -> shape (``None``: any shape; ``-1`` in a shape: any size
    on that axis). Raises :class:`ContentError` naming the file and the field on mismatch.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = Path(folder)
    cfg_file, w_file = folder / "config.json", folder / "weights.safetensors"
    for f in (cfg_file, w_file):
        if not f.is_file():
            raise ContentError(f"{f}: missing (expected a {kind} artifact folder)")
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ContentError(f"{cfg_file}: corrupt JSON ({e})") from None
    if not isinstance(cfg, dict) or cfg.get("kind") != kind:
        got = cfg.get("kind") if isinstance(cfg, dict) else type(cfg).__name__
        raise ContentError(f"{cfg_file}: field 'kind' is {got!r}, expected {kind!r}")
    try:
        tensors = load_file(str(w_file))
    except (SafetensorError, OSError, ValueError) as e:
        raise ContentError(f"{w_file}: corrupt safetensors file ({e})") from None
    for name, shape in expected.items():
        if name not in tensors:
            raise ContentError(f"{w_file}: missing tensor '{name}'")
        if shape is not None:
            got_shape = tensors[name].shape
            if len(got_shape) != len(shape) or any(s != -1 and s != g for s, g in zip(shape, got_shape, strict=True)):
                raise ContentError(f"{w_file}: tensor '{name}' has shape {got_shape}, config says {shape}")
    return cfg, tensors
