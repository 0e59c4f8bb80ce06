"""The online trainer's inputs: its settings, event normalisation and growing id maps."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from notefeed.rank.features import ENGAGE_TYPES
from notefeed.schema import EVENT_TYPES

__all__ = ["OnlineTrainConfig", "normalise_events"]

_LABEL_TYPES = frozenset(ENGAGE_TYPES)


@dataclass
class OnlineTrainConfig:
    """Join window and update cadence (seconds are stream seconds, i.e. event ``ts``)."""

    wait_s: int = 1800  # label wait window after an impression
    interval_s: int = 600  # update at least this often (stream time) when samples are ready
    min_samples: int = 4096  # ... or as soon as this many are ready
    passes: int = 2  # passes over each update's samples
    replay_ratio: float = 1.0  # older samples mixed in per new sample
    replay_size: int = 50_000  # recent samples kept for replay
    batch_size: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        for k in ("wait_s", "interval_s", "min_samples", "passes", "batch_size"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"OnlineTrainConfig.{k} must be a positive integer, got {v!r}")
        if not (0.0 <= self.replay_ratio <= 100.0):
            raise ValueError(f"OnlineTrainConfig.replay_ratio must be in [0, 100], got {self.replay_ratio!r}")


def _field(rows: pd.DataFrame, *names: str) -> str | None:
    return next((n for n in names if n in rows.columns), None)


def normalise_events(events: pd.DataFrame | Iterable[Any]) -> pd.DataFrame:
    """Events -> frame with ``user``/``item`` (int or str ids), ``ts`` int64, ``type`` str, ``dwell_s``,
    ``position``, ``surface``, ``received_at`` (NaN = now). Raises ``ValueError`` naming the field."""
    if not isinstance(events, pd.DataFrame):
        rows = [e.to_dict() if hasattr(e, "to_dict") else e for e in events]
        for k, r in enumerate(rows):
            if not isinstance(r, Mapping):
                raise ValueError(f"events: row {k} is a {type(r).__name__}, not a mapping/EventRecord")
        events = pd.DataFrame(rows)
    n = len(events)
    uc, ic = _field(events, "user", "user_id"), _field(events, "item", "note_id")
    for name, col in (("user (or user_id)", uc), ("item (or note_id)", ic)):
        if col is None and n:
            raise ValueError(f"events: missing field '{name}'")
    for col in ("ts", "type"):
        if col not in events.columns and n:
            raise ValueError(f"events: missing field '{col}'")
    if not n:
        return pd.DataFrame({c: [] for c in ("user", "item", "ts", "type", "dwell_s", "position", "surface",
                                              "received_at")})
    out = pd.DataFrame({"user": events[uc].to_numpy(), "item": events[ic].to_numpy()})
    for f in ("user", "item"):
        bad = out[f].isna().to_numpy()
        if bad.any():
            raise ValueError(f"events: row {int(np.flatnonzero(bad)[0])}: field '{f}' is missing")
    ts = pd.to_numeric(events["ts"], errors="coerce")
    bad = (ts.isna() | (ts < 0) | (ts != np.floor(ts))).to_numpy()
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"events: row {k}: field 'ts' must be a non-negative integer, got {events['ts'].iloc[k]!r}")
    out["ts"] = ts.to_numpy(np.int64)
    types = events["type"].astype(str).to_numpy()
    bad = ~np.isin(types, EVENT_TYPES)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"events: row {k}: field 'type' is {types[k]!r}; known: {', '.join(EVENT_TYPES)}")
    out["type"] = types
    for f, default in (("dwell_s", np.nan), ("position", -1), ("received_at", np.nan)):
        col = pd.to_numeric(events[f], errors="coerce") if f in events.columns else pd.Series(np.full(n, default))
        out[f] = col.fillna(default).to_numpy(np.float64)
    out["surface"] = events["surface"].astype(str).to_numpy() if "surface" in events.columns else "feed"
    return out


class _Ids:
    """External id / index -> dense index, growing for unseen ids."""

    def __init__(self, known: list[str]) -> None:
        self.ids = list(known)
        self.index = {s: k for k, s in enumerate(self.ids)}
        self.n_base = len(self.ids)

    def map(self, values: np.ndarray, prefix: str) -> np.ndarray:
        out = np.empty(len(values), np.int64)
        for k, v in enumerate(values.tolist()):
            if isinstance(v, int | np.integer) and not isinstance(v, bool):
                if v < 0:
                    raise ValueError(f"events: row {k}: field '{prefix}' index must be >= 0, got {v}")
                while len(self.ids) <= v:  # an index past the catalogue: grow up to it
                    self.add(f"__{prefix}{len(self.ids)}")
                out[k] = v
            else:
                s = str(v)
                j = self.index.get(s)
                out[k] = self.add(s) if j is None else j
        return out

    def add(self, s: str) -> int:
        self.index[s] = len(self.ids)
        self.ids.append(s)
        return len(self.ids) - 1
