"""Page slots that ranking cannot push out: the page mixer after re-ranking.

A *side* source (``side = True``: ``coldstart/bandit``, ``llm/interest`` with ``slots > 0``)
keeps its candidates out of ranking; the executor merges every side source's answer into one
side set and hands it, behind the ranked candidates, to the first selector with
``mixes_side = True``. :class:`SideSlots` is that selector: each side source has its own
:class:`SlotPart` (how many notes per page, ordered by which of its own score columns), and
its picks are inserted into the re-ranked page at spread positions (:func:`spread_insert`),
not stacked at the top. A side source declares its part with two attributes, ``slots`` and
``slot_score`` (the column its answer carries), and may name the part (``slot_name``) and give
a grouping of notes (``slot_groups``: item indices to group codes, e.g. categories) so that its
slots skip groups the page already shows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from notefeed.recall.base import UserContext
from notefeed.serve.pipeline import CandidateSet

__all__ = ["SlotPart", "SideSlots", "slot_parts", "spread_insert"]


def spread_insert(page: list[int], extra: list[int], n: int) -> list[int]:
    """``extra`` inserted into ``page`` at spread positions (1, 1 + n/m, ...), cut to ``n``:
    not stacked at the top, where position bias would make every new note look good."""
    out = list(page)
    m = max(len(extra), 1)
    for j, x in enumerate(extra):
        out.insert(min(len(out), 1 + j * max(n // m, 1)), x)
    return out[:n]


@dataclass(frozen=True)
class SlotPart:
    """Up to ``slots`` notes per page from the side rows the channel ``source`` recalled,
    best ``score`` (a column of its answer) first; ``name`` labels the part in the step name.
    ``groups`` (item indices to int group codes, < 0: none): a side note whose group a kept
    ranked note or an earlier pick of the part already has is skipped. ``at_end``: the part's
    picks take the page's last positions instead of spread ones (the ranked notes above keep
    their positions)."""

    source: str
    slots: int
    score: str
    name: str = ""
    groups: Callable[[np.ndarray], np.ndarray] | None = field(default=None, compare=False)
    at_end: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.slots, int) or isinstance(self.slots, bool) or self.slots < 0:
            raise ValueError(f"slot part {self.source!r}: slots must be an integer >= 0, got {self.slots!r}")
        if not self.source or not self.score:
            raise ValueError("slot part: source and score column must be named")

    @property
    def label(self) -> str:
        return self.name or f"{self.source}/slots"


def slot_parts(components: Iterable[Any]) -> list[SlotPart]:
    """The slot parts the side components among ``components`` declare (``slots > 0``)."""
    out = []
    for c in components:
        slots = int(getattr(c, "slots", 0) or 0)
        if getattr(c, "side", False) and slots > 0:
            out.append(SlotPart(str(c.name), slots, str(c.slot_score), str(getattr(c, "slot_name", "")),
                                getattr(c, "slot_groups", None), getattr(c, "slot_position", "spread") == "end"))
    return out


class SideSlots:
    """After re-ranking, each part's side candidates into the page at spread positions.

    Sees the re-ranked page (rows with ``main`` = 1, in order) plus the side candidates
    (``side`` = 1). Per part, in the given order: a side note of that source that made the page
    through ranking counts against its slots; the remaining slots take that source's side rows
    not on the page, best ``score`` first (NaN last; ties keep the source's order). A note two
    sources recalled is placed once, by the first part that picks it. The last ranked notes
    make room, so the page keeps ``n`` notes.
    """

    mixes_side = True

    def __init__(self, parts: Sequence[SlotPart], name: str | None = None) -> None:
        parts = list(parts)
        if not parts:
            raise ValueError("SideSlots: needs at least one slot part")
        if len({p.source for p in parts}) != len(parts):
            raise ValueError(f"SideSlots: a source named twice in {[p.source for p in parts]}")
        self.parts = parts
        self.name = name or "+".join(p.label for p in parts)

    @property
    def slots(self) -> int:
        return sum(p.slots for p in self.parts)

    def select(self, ctx: UserContext, cs: CandidateSet, n: int) -> np.ndarray:
        main = cs.columns["main"] > 0
        side = cs.columns["side"] > 0
        ranked = np.flatnonzero(main)[:n]
        taken = np.zeros(len(cs), bool)
        extra: list[int] = []
        end: list[int] = []
        for p in self.parts:
            mine = _recalled_by(cs, p.source) & side
            room = max(0, min(p.slots - int(mine[ranked].sum()), n - len(extra) - len(end)))
            if not room:
                continue
            rows = np.flatnonzero(mine & ~main & ~taken)
            col = cs.columns.get(p.score)
            score = np.zeros(len(rows), np.float32) if col is None else np.nan_to_num(col[rows], nan=-np.inf)
            rows = rows[np.argsort(-score, kind="stable")]
            pick = rows[:room] if p.groups is None else _distinct(rows, cs.items, ranked[: max(0, n - self.slots)],
                                                                   p.groups, room)
            taken[pick] = True
            (end if p.at_end else extra).extend(pick.tolist())
        n_extra = len(extra) + len(end)
        keep = ranked[: max(0, n - n_extra)] if len(ranked) + n_extra > n else ranked
        page = spread_insert(keep.tolist(), extra, n - len(end)) + end
        return np.asarray(page[:n], np.int64)


def _distinct(rows: np.ndarray, items: np.ndarray, kept: np.ndarray,
              groups: Callable[[np.ndarray], np.ndarray], room: int) -> np.ndarray:
    """Up to ``room`` of ``rows`` (in order) whose group neither the ``kept`` ranked rows nor an
    earlier pick has; rows without a group (< 0) are skipped too."""
    used = {int(g) for g in groups(items[kept]) if g >= 0}
    out = []
    for r, g in zip(rows.tolist(), groups(items[rows]).tolist(), strict=True):
        if len(out) >= room:
            break
        if g >= 0 and g not in used:
            used.add(int(g))
            out.append(r)
    return np.asarray(out, np.int64)


def _recalled_by(cs: CandidateSet, source: str) -> np.ndarray:
    """(n,) bool: rows whose channels include ``source``."""
    ch = cs.channels
    names = getattr(ch, "names", None)
    if names is not None:  # a ChannelLists: its hit matrix's columns of that name
        cols = [k for k, name in enumerate(names) if name == source]
        return np.asarray(ch.hits)[:, cols].sum(axis=1) > 0
    return np.fromiter((source in c for c in ch), bool, count=len(cs))
