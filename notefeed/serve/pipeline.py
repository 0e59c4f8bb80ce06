"""The feed pipeline, product-mixer style: steps are data, the executor keeps the books.

Four kinds of step, each a small contract:

- candidate source (a :class:`~notefeed.recall.base.RecallChannel`, with a quota),
- filter: ``apply(ctx, cs) -> FilterResult(kept, removed)`` (positions into ``cs``),
- scorer: ``score(ctx, cs) -> {column: (n,) float32}`` written into ``cs.columns``,
- selector: ``select(ctx, cs, n) -> positions`` (an ordered subset of ``cs``).

A source whose component has ``side = True`` (``coldstart/bandit``; ``llm/interest`` with
``slots > 0``) is a *side* source: its candidates are not merged into the ranked set but kept
aside (filters still apply; every side source's answer merged into one side set) until a
selector with ``mixes_side = True`` (the page mixer, :class:`~notefeed.serve.slots.SideSlots`:
``coldstart/slots``) runs. That selector sees the ranked candidates (column ``main`` = 1, in
order) followed by the side ones (column ``side`` = 1), and places some of them into the
page, each side source's own number by its own score column: a boost that ranking cannot undo.

The executor, not the components, records each step's wall time, in/out counts, removed
counts and errors, and the per-item trace (channels, coarse score, fine scores per task,
fused score, rank before re-ranking, final position). A failing source or scorer degrades
the feed instead of failing it: its error goes into the trace and the request goes on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from notefeed.online.coldstart import STAGES as COLDSTART_STAGES
from notefeed.recall.base import Candidates, SideCandidates, UserContext
from notefeed.recall.merge import ChannelLists

__all__ = [
    "CandidateSet",
    "SideCandidates",
    "FilterResult",
    "Filter",
    "PipelineScorer",
    "Selector",
    "Step",
    "StageRecord",
    "FeedResult",
    "Pipeline",
]

StepKind = Literal["source", "filter", "scorer", "selector"]


@dataclass
class CandidateSet:
    """Candidates in flight. ``items`` (n,) int64; ``channels[j]`` the channels that
    recalled ``items[j]`` (a :class:`~notefeed.recall.merge.ChannelLists` from the merge, or
    plain lists); ``columns`` name -> (n,) float32 (``recall``, ``coarse``, ``fine.<task>``,
    ``fused``, ``fused_rank``...)."""

    items: np.ndarray
    channels: Sequence[list[str]]
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def take(self, pos: np.ndarray) -> CandidateSet:
        pos = np.asarray(pos, dtype=np.int64)
        ch = self.channels
        return CandidateSet(
            self.items[pos],
            ch.take(pos) if isinstance(ch, ChannelLists) else [ch[p] for p in pos.tolist()],
            {k: v[pos] for k, v in self.columns.items()},
        )


def _mix(cs: CandidateSet, side: CandidateSet) -> CandidateSet:
    """``cs`` (column ``main`` = 1) then the side candidates not already in it (``side`` = 1);
    side items already ranked get the side channel and columns on their row."""
    a, b = cs.channels, side.channels
    if isinstance(a, ChannelLists) and isinstance(b, ChannelLists) and not set(a.names) & set(b.names):
        return _mix_arrays(cs, side, a, b)
    n, pos = len(cs), {int(it): j for j, it in enumerate(cs.items.tolist())}
    new = [j for j, it in enumerate(side.items.tolist()) if it not in pos]
    out = CandidateSet(np.concatenate([cs.items, side.items[new]]).astype(np.int64),
                       [list(c) for c in cs.channels] + [list(side.channels[j]) for j in new])
    row = np.empty(len(side), np.int64)
    for j, it in enumerate(side.items.tolist()):
        r = pos.get(it)
        if r is None:
            r = n + new.index(j)
        else:
            out.channels[r] += [c for c in side.channels[j] if c not in out.channels[r]]
        row[j] = r
    return _mix_columns(out, cs, side, row)


def _mix_columns(out: CandidateSet, cs: CandidateSet, side: CandidateSet, row: np.ndarray) -> CandidateSet:
    """``out``'s columns: ``cs``'s (0 on the side rows, never scored), ``main``/``side`` flags,
    and the side source's columns on the rows ``row`` its items landed on (NaN elsewhere)."""
    n, m = len(cs), len(out)
    for key, v in cs.columns.items():
        out.columns[key] = np.concatenate([v, np.zeros(m - n, np.float32)])
    out.columns["main"] = (np.arange(m) < n).astype(np.float32)
    out.columns["side"] = np.zeros(m, np.float32)
    for key in side.columns:
        if key != "recall":
            out.columns.setdefault(key, np.full(m, np.nan, np.float32))
    out.columns["side"][row] = 1.0
    for key, v in side.columns.items():
        if key != "recall":
            out.columns[key][row] = v
    return out


def _mix_arrays(cs: CandidateSet, side: CandidateSet, a: ChannelLists, b: ChannelLists) -> CandidateSet:
    """:func:`_mix` in arrays, for channel matrices with disjoint names (the served case: the
    side source's channel never ranks), where a ranked row's side channels are simply appended.
    Repeated items (never from the merge) take the list path."""
    n, k = len(cs), len(side)
    if np.unique(cs.items).size != n or np.unique(side.items).size != k:
        return _mix(CandidateSet(cs.items, list(a), cs.columns), CandidateSet(side.items, list(b), side.columns))
    hit = np.zeros(k, bool)
    row = np.empty(k, np.int64)
    if n and k:
        order = np.argsort(cs.items, kind="stable")
        at = np.minimum(np.searchsorted(cs.items, side.items, sorter=order), n - 1)
        hit = cs.items[order[at]] == side.items
        row[hit] = order[at[hit]]
    new = np.flatnonzero(~hit)
    m = n + new.size
    row[new] = n + np.arange(new.size)
    hits = np.zeros((m, len(a.names) + len(b.names)), np.int32)
    hits[:n, : len(a.names)] = a.hits
    hits[row, len(a.names):] = b.hits
    out = CandidateSet(np.concatenate([cs.items, side.items[new]]).astype(np.int64),
                       ChannelLists(a.names + b.names, hits))
    return _mix_columns(out, cs, side, row)


@dataclass
class FilterResult:
    """Positions (into the filtered :class:`CandidateSet`) kept and removed."""

    kept: np.ndarray
    removed: np.ndarray


@runtime_checkable
class Filter(Protocol):
    name: str

    def apply(self, ctx: UserContext, cs: CandidateSet) -> FilterResult: ...


@runtime_checkable
class PipelineScorer(Protocol):
    name: str

    def score(self, ctx: UserContext, cs: CandidateSet) -> dict[str, np.ndarray]: ...


@runtime_checkable
class Selector(Protocol):
    name: str

    def select(self, ctx: UserContext, cs: CandidateSet, n: int) -> np.ndarray: ...


@dataclass
class Step:
    """One pipeline step. ``quota`` is used by sources only."""

    kind: StepKind
    component: Any
    quota: int = 0

    @property
    def name(self) -> str:
        return str(getattr(self.component, "name", type(self.component).__name__))

    @property
    def side(self) -> bool:
        """A side source: candidates kept out of ranking for a ``mixes_side`` selector."""
        return self.kind == "source" and bool(getattr(self.component, "side", False))


@dataclass
class StageRecord:
    kind: str
    name: str
    ms: float
    n_in: int
    n_out: int
    removed: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class FeedResult:
    items: np.ndarray
    stages: list[StageRecord]
    total_ms: float
    candidates: CandidateSet
    errors: list[str]
    #: with ``probe=True``: (step name, item order) after the filters (by the ``recall``
    #: column, named ``recall``) and after every selector, so an evaluation can score each stage
    snapshots: list[tuple[str, np.ndarray]] = field(default_factory=list)

    def timings(self) -> dict[str, float]:
        """Milliseconds per step kind (sources summed), plus ``total``."""
        out: dict[str, float] = {}
        for s in self.stages:
            out[s.kind] = out.get(s.kind, 0.0) + s.ms
        out["total"] = self.total_ms
        return out

    def trace(self, note_ids: Sequence[str] | None = None) -> dict[str, Any]:
        cs = self.candidates
        fine = sorted(k for k in cs.columns if k.startswith("fine."))
        items = []
        for j in range(len(cs)):
            row: dict[str, Any] = {
                "item": int(cs.items[j]),
                "position": j,
                "channels": list(cs.channels[j]),
            }
            if note_ids is not None:
                row["note_id"] = note_ids[int(cs.items[j])]
            for col, key in (("recall", "recall_score"), ("coarse", "coarse_score"), ("fused", "fused_score")):
                if col in cs.columns:
                    row[key] = float(cs.columns[col][j])
            if "fused_rank" in cs.columns:
                row["fused_rank"] = int(cs.columns["fused_rank"][j])
            row["fine_scores"] = {k[5:]: float(cs.columns[k][j]) for k in fine}
            stage = cs.columns.get("coldstart.stage")
            if stage is not None and np.isfinite(stage[j]):
                # a cold-start pool note: its stage, bandit score, and whether the slot selector
                # placed it (boosted) rather than ranking
                row["coldstart"] = {
                    "stage": COLDSTART_STAGES[int(stage[j])],
                    "score": float(cs.columns["coldstart.score"][j]),
                    "boosted": bool(cs.columns.get("main", np.ones(len(cs)))[j] == 0),
                }
            latent = cs.columns.get("interest.score")
            if latent is not None and np.isfinite(latent[j]):
                # a latent-interest note of llm/interest's page slots: its score, and whether
                # the slot selector placed it (boosted) rather than ranking
                row["latent_interest"] = {
                    "score": float(latent[j]),
                    "boosted": bool(cs.columns.get("main", np.ones(len(cs)))[j] == 0),
                }
            items.append(row)
        return {
            "stages": [s.to_dict() for s in self.stages],
            "total_ms": self.total_ms,
            "errors": list(self.errors),
            "items": items,
        }


def _merge(results: list[tuple[Candidates, int]]) -> CandidateSet:
    """The one recall merge (:func:`notefeed.recall.merge.merge_answers`): channel order, first
    occurrence keeps its position, channels accumulate; ``recall`` = best rank-normalised
    score, ``recall.<channel>`` each channel's, plus side sources' own columns."""
    from notefeed.recall.merge import merge_answers

    items, channels, columns = merge_answers(results)
    return CandidateSet(items, channels, columns)


class Pipeline:
    """Runs ``steps`` in order: all sources first (they see the context only), then the
    rest in the given order. Step order is data (built from the config)."""

    def __init__(self, name: str, steps: Sequence[Step]) -> None:
        kinds = [s.kind for s in steps]
        if "source" not in kinds:
            raise ValueError(f"pipeline {name!r}: needs at least one source step")
        first_other = next((i for i, k in enumerate(kinds) if k != "source"), len(kinds))
        if "source" in kinds[first_other:]:
            raise ValueError(f"pipeline {name!r}: source steps must come first")
        for s in steps:
            if s.kind == "source" and s.quota < 1:
                raise ValueError(f"pipeline {name!r}: source {s.name!r} needs quota >= 1")
        self.name = name
        self.steps = list(steps)
        #: components the config names that were not trained, served by a built-in instead
        self.fallbacks: list[str] = []
        self.fit_seconds: dict[str, float] = {}  # the channels build_pipeline fitted, by config place

    @property
    def sources(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "source"]

    def run(self, ctx: UserContext, n: int, probe: bool = False, stop_before: str | None = None) -> FeedResult:
        """The page of ``n`` for ``ctx``. ``probe`` records each stage's order in
        ``FeedResult.snapshots``; ``stop_before`` (a step name) returns the candidate set as
        it enters that step, untruncated (training samples that look like serving)."""
        t_start = time.perf_counter()
        snapshots: list[tuple[str, np.ndarray]] = []
        stages: list[StageRecord] = []
        errors: list[str] = []
        answers: list[tuple[Candidates, int]] = []
        side_answers: list[tuple[Candidates, int]] = []
        for st in self.sources:
            t0 = time.perf_counter()
            err = None
            try:
                cand = st.component.recall(ctx, st.quota)
                if not isinstance(cand, Candidates):
                    raise TypeError(f"recall returned {type(cand).__name__}, not Candidates")
                cand.channel = cand.channel or st.name
                (side_answers if st.side else answers).append((cand, st.quota))
                n_out = min(len(cand), st.quota)
            except Exception as e:  # fail open: a broken channel must not break the feed
                err = f"{st.name}: {type(e).__name__}: {e}"
                errors.append(err)
                n_out = 0
            stages.append(StageRecord("source", st.name, (time.perf_counter() - t0) * 1e3, 0, n_out, error=err))
        t0 = time.perf_counter()
        cs = _merge(answers)
        stages.append(StageRecord("merge", "merge", (time.perf_counter() - t0) * 1e3,
                                  sum(min(len(c), q) for c, q in answers), len(cs)))
        side = _merge(side_answers) if side_answers else None
        filtered = False
        for st in self.steps:
            if st.kind == "source":
                continue
            if probe and st.kind != "filter" and not filtered:
                filtered = True
                snapshots.append(("recall", cs.items[np.argsort(-cs.columns["recall"], kind="stable")]))
            if stop_before is not None and st.name == stop_before:
                total = (time.perf_counter() - t_start) * 1e3
                return FeedResult(cs.items.copy(), stages, total, cs, errors, snapshots)
            t0 = time.perf_counter()
            n_in, err, removed = len(cs), None, 0
            try:
                if st.kind == "filter":
                    res = st.component.apply(ctx, cs)
                    removed = len(res.removed)
                    cs = cs.take(res.kept)
                    if side is not None and len(side):
                        sres = st.component.apply(ctx, side)
                        removed += len(sres.removed)
                        side = side.take(sres.kept)
                elif st.kind == "scorer":
                    if len(cs):
                        for col, v in st.component.score(ctx, cs).items():
                            v = np.asarray(v, np.float32)
                            if v.shape != (len(cs),):
                                raise ValueError(f"column {col!r} has shape {v.shape}, expected {(len(cs),)}")
                            cs.columns[col] = v
                elif st.kind == "selector":
                    if getattr(st.component, "mixes_side", False):
                        empty = CandidateSet(np.zeros(0, np.int64), ChannelLists((), np.zeros((0, 0))), {})
                        cs = _mix(cs, side if side is not None else empty)
                        side, n_in = None, len(cs)
                    pos = np.asarray(st.component.select(ctx, cs, n), np.int64)
                    if len(pos) and (pos.min() < 0 or pos.max() >= len(cs)):
                        raise IndexError("selector returned positions out of range")
                    removed = len(cs) - len(pos)
                    cs = cs.take(pos)
                else:  # pragma: no cover - Step.kind is a Literal
                    raise ValueError(f"unknown step kind {st.kind!r}")
            except Exception as e:
                # scorers and selectors fail open too: the request keeps the previous order
                err = f"{st.name}: {type(e).__name__}: {e}"
                errors.append(err)
            stages.append(StageRecord(st.kind, st.name, (time.perf_counter() - t0) * 1e3, n_in, len(cs),
                                      removed, err))
            if probe and st.kind == "selector":
                snapshots.append((st.name, cs.items.copy()))
        if stop_before is not None:
            raise KeyError(f"stop_before: no step named {stop_before!r} in pipeline {self.name!r}")
        if len(cs) > n:
            cs = cs.take(np.arange(n))
        total = (time.perf_counter() - t_start) * 1e3
        return FeedResult(cs.items.copy(), stages, total, cs, errors, snapshots)
