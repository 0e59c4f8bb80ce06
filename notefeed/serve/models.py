"""Versioned model holder with background loading and atomic swap.

A request reads :meth:`ModelHolder.current` once, at its start, and uses that version to
the end; :meth:`ModelHolder.reload` loads a new directory on a background thread and then
replaces one reference (atomic in CPython), so in-flight requests finish on the old version
and new requests see the new one. A directory that fails to load leaves the old version in
place and the error in :attr:`ModelHolder.last_error`.

Model directories are ``model.json`` + ``weights.safetensors``. ``model.json`` has
``kind`` (``builtin/linear`` or a ``SCORERS`` name whose factory has ``load(path)``)
and ``version``.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from notefeed.models.artifacts import ModelError  # one error type for model files, store and serving

__all__ = ["LinearModel", "ModelVersion", "ModelHolder", "load_model_dir", "FEATURES", "ModelError"]

#: Features of the built-in linear fine ranker, in column order (see ``components.features``).
FEATURES: tuple[str, ...] = (
    "bias", "log_pop", "recency", "cat_1h", "cat_seq", "small_creator", "n_channels", "recall",
)
_PROB_TASKS = ("click", "like", "collect", "comment", "share")




@dataclass(frozen=True)
class LinearModel:
    """Per-task linear model on :data:`FEATURES`: ``weights`` (n_tasks, n_features).

    Probability tasks go through a sigmoid; ``dwell`` (seconds) through softplus.
    """

    tasks: tuple[str, ...]
    weights: np.ndarray
    kind: str = "builtin/linear"

    def __post_init__(self) -> None:
        if self.weights.shape != (len(self.tasks), len(FEATURES)):
            raise ModelError(f"weights shape {self.weights.shape} != ({len(self.tasks)}, {len(FEATURES)})")
        if not np.isfinite(self.weights).all():
            raise ModelError("weights contain NaN or inf")

    @classmethod
    def default(cls) -> LinearModel:
        tasks = (*_PROB_TASKS, "dwell")
        w = np.zeros((len(tasks), len(FEATURES)), np.float32)
        # hand-set priors: popular, fresh, on-topic items engage more
        base = np.array([-2.0, 0.35, 0.6, 0.5, 1.2, 0.1, 0.2, 0.5], np.float32)
        for t, scale in enumerate((1.0, 0.8, 0.7, 0.5, 0.4, 1.5)):
            w[t] = base * scale
        return cls(tasks, w)

    def predict(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """``x`` (n, n_features) -> ``{task: (n,) float32}``."""
        z = x.astype(np.float32) @ self.weights.T
        out = {}
        for t, task in enumerate(self.tasks):
            if task == "dwell":
                out[task] = np.logaddexp(0.0, z[:, t]).astype(np.float32)
            else:
                out[task] = (1.0 / (1.0 + np.exp(-z[:, t]))).astype(np.float32)
        return out

    def save(self, path: str | Path, version: str) -> Path:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        save_file({"weights": np.ascontiguousarray(self.weights, np.float32)}, str(p / "weights.safetensors"))
        meta = {"kind": self.kind, "version": version, "tasks": list(self.tasks), "features": list(FEATURES)}
        (p / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
        return p

    @classmethod
    def load(cls, path: str | Path) -> LinearModel:
        p = Path(path)
        meta = _read_meta(p)
        if meta.get("features") != list(FEATURES):
            raise ModelError(f"{p}/model.json: features {meta.get('features')} do not match {list(FEATURES)}")
        try:
            w = load_file(str(p / "weights.safetensors"))["weights"]
        except FileNotFoundError:
            raise ModelError(f"{p}: missing weights.safetensors") from None
        except (SafetensorError, KeyError, OSError) as e:
            raise ModelError(f"{p}/weights.safetensors: corrupt or wrong content ({e})") from None
        return cls(tuple(meta.get("tasks", ())), w.astype(np.float32))


def _read_meta(p: Path) -> dict[str, Any]:
    try:
        meta = json.loads((p / "model.json").read_text())
    except FileNotFoundError:
        raise ModelError(f"{p}: missing model.json") from None
    except json.JSONDecodeError as e:
        raise ModelError(f"{p}/model.json: not JSON ({e})") from None
    if not isinstance(meta, dict) or "version" not in meta or "kind" not in meta:
        raise ModelError(f"{p}/model.json: needs 'kind' and 'version'")
    return meta


def load_model_dir(path: str | Path, ds: Any = None) -> tuple[str, Any]:
    """Load any supported model directory; return ``(version, model)``.

    ``model.json`` (ours: ``kind`` + ``version``) or the rank stage's checkpoint layout
    (``config.json`` with ``kind``, ``model.safetensors``; the version is then the directory
    name). Non-builtin kinds are loaded by the ``SCORERS`` factory's ``load(path)``.
    """
    p = Path(path)
    if not (p / "model.json").exists() and (p / "config.json").exists():
        try:
            doc = json.loads((p / "config.json").read_text())
        except json.JSONDecodeError as e:
            raise ModelError(f"{p}/config.json: not JSON ({e})") from None
        if not isinstance(doc, dict) or "kind" not in doc:
            raise ModelError(f"{p}/config.json: needs 'kind'")
        meta = {"kind": doc["kind"], "version": p.name}
        if doc["kind"] == "fine_ranker":  # the rank stage's FineRanker checkpoint
            if ds is None:
                raise ModelError(f"{p}: a fine_ranker checkpoint needs the served dataset")
            from notefeed.serve.rankwire import load_rank_checkpoint

            try:
                return p.name, load_rank_checkpoint(p, ds)
            except (ValueError, OSError) as e:
                raise ModelError(f"{p}: cannot load fine_ranker ({e})") from None
    else:
        meta = _read_meta(p)
    kind = str(meta["kind"])
    if kind == "builtin/linear":
        return str(meta["version"]), LinearModel.load(p)
    from notefeed.rank.base import SCORERS

    # a SCORERS name, or the ``kind`` class attribute a registered factory writes to its files
    factory = SCORERS.get(kind) if kind in SCORERS else next(
        (SCORERS.get(n) for n in SCORERS.names() if getattr(SCORERS.get(n), "kind", None) == kind), None)
    if factory is None:
        raise ModelError(f"{p}: unknown model kind {kind!r} (field 'kind'); known: "
                         f"{['builtin/linear', *SCORERS.names()]}")
    loader = getattr(factory, "load", None)
    if loader is None:
        raise ModelError(f"{p}: scorer {kind!r} cannot be loaded from a directory (no load())")
    try:
        model = loader(p)
    except ModelError:
        raise
    except (ValueError, OSError) as e:  # e.g. the rank stage's CheckpointError
        raise ModelError(f"{p}: cannot load {kind!r} ({e})") from None
    if not callable(getattr(model, "score", None)):  # refuse now, not on every request
        raise ModelError(f"{p}: {type(model).__name__} has no score(ctx, items); cannot serve it")
    return str(meta["version"]), model


@dataclass(frozen=True)
class ModelVersion:
    version: str
    model: Any
    loaded_at: float
    source: str | None = None


class ModelHolder:
    """Holds the current :class:`ModelVersion`; reloads in the background."""

    def __init__(self, initial: ModelVersion,
                 loader: Callable[[str | Path], tuple[str, Any]] = load_model_dir,
                 validate: Callable[[Any], None] | None = None) -> None:
        self._current = initial
        self._loader = loader
        #: called on a loaded model before it is swapped in; raising refuses it
        self.validate = validate
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notefeed-model-load")
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self.swaps = 0

    @classmethod
    def from_dir_or_default(cls, model_dir: str | None, ds: Any = None,
                            validate: Callable[[Any], None] | None = None) -> ModelHolder:
        """Load ``model_dir`` (or the built-in linear priors); later reloads use the same
        dataset ``ds`` (rank-stage checkpoints build their features over it) and ``validate``."""
        loader = functools.partial(load_model_dir, ds=ds)
        if model_dir:
            version, model = loader(model_dir)
            if validate is not None:
                validate(model)
            return cls(ModelVersion(version, model, time.time(), str(model_dir)), loader, validate)
        return cls(ModelVersion("builtin-default", LinearModel.default(), time.time()), loader, validate)

    def current(self) -> ModelVersion:
        return self._current

    def set(self, version: ModelVersion) -> None:
        """Swap in an already-built version (start-up, tests)."""
        with self._lock:
            self._current = version

    def _load_and_swap(self, path: str | Path) -> ModelVersion:
        try:
            version, model = self._loader(path)
            if self.validate is not None:
                self.validate(model)
        except Exception as e:
            self.last_error = f"{type(e).__name__}: {e}"
            raise
        new = ModelVersion(version, model, time.time(), str(path))
        with self._lock:
            self._current = new  # the swap: one reference assignment
            self.swaps += 1
            self.last_error = None
        return new

    def reload(self, path: str | Path) -> Future[ModelVersion]:
        """Start loading ``path`` in the background; the future resolves after the swap."""
        return self._pool.submit(self._load_and_swap, path)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
