"""A serving engine's ``tag/interest`` channel takes published and edited notes and the positive
events it accepts at once, on every worker and after a restart (before, it never indexed a
published note, kept a note's fitted tags after an edit and its fitted counts until a refit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from notefeed.recall.base import UserContext
from notefeed.recall.tag import TagInterestChannel
from notefeed.schema import Event, Note
from notefeed.serve.config import builtin_config
from notefeed.serve.engine import Engine, popular_config

from ..recall.conftest import make_community


def _engine(ws: Path) -> Engine:
    cfg = popular_config(builtin_config()).with_overrides(recall={"channels": [
        {"name": "fresh/recent", "quota": 20},
        {"name": "tag/interest", "quota": 100, "params": {"postings": 30}}]})
    return Engine(make_community(), cfg, ws)


def _tag(eng: Engine) -> TagInterestChannel:
    (ch,) = [st.component for st in eng.pipelines["default"].sources if isinstance(st.component, TagInterestChannel)]
    return ch


def _recall(eng: Engine, *note_ids: str) -> list[str]:
    hist = np.array([eng.catalog.item_of(n) for n in note_ids])
    got = _tag(eng).recall(UserContext("x", None, history=hist), 100)
    return [eng.catalog.note_ids[i] for i in got.items.tolist()]


def test_published_and_edited_notes_reach_tag_interest(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    a, b = _engine(ws), _engine(ws)
    try:
        n = a.catalog.n_items
        a.publish(Note(note_id="p0", author_id="c1", title="knots", tags=["knitting"], category="craft"))
        a.publish(Note(note_id="p1", author_id="c2", title="more knots", tags=["knitting"], category="craft"))
        assert _tag(a).n_indexed == n + 2
        assert _recall(a, "p0")[:1] == ["p1"]  # the only other note with p0's terms
        a.edit_note("n3", {"tags": ["knitting"]})  # a fitted note (topic3, sub3) moves to the new tag
        assert "n3" in _recall(a, "p0") and "n3" in _recall(a, "p1")
        assert set(_recall(a, "n3")[:2]) == {"p0", "p1"}
        with b._notes_lock:  # what another worker's follower does each round
            b._read_note_log()
        assert _tag(b).n_indexed == n + 2 and _recall(b, "p0") == _recall(a, "p0")
        assert _recall(b, "n3") == _recall(a, "n3")
        before = {k: _recall(a, k) for k in ("p0", "n3", "n7")}
    finally:
        a.close()
        b.close()
    c = _engine(ws)  # a restart on the same workspace: the note log's notes and edits again
    try:
        assert _tag(c).n_indexed == n + 2
        assert {k: _recall(c, k) for k in before} == before
    finally:
        c.close()


def test_positive_events_reach_tag_interest(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    a = _engine(ws)
    try:
        topic0 = [f"n{i}" for i in range(0, a.catalog.n_items, 4)]
        last = topic0[-1]  # the least clicked topic-0 note: past topic0's 30-note cut
        posting = lambda e: [e.catalog.note_ids[i] for i in _tag(e)._posting(_tag(e).term_names.index("topic0"))[0]]  # noqa: E731
        assert last not in posting(a)
        accepted, _ = a.ingest([Event(user_id=f"u{j}", note_id=last, ts=3_000_000 + j, type="click") for j in range(6)])
        assert accepted == 6 and last in posting(a)
        a.ingest([Event(user_id="u1", note_id=last, ts=3_000_100, type="impression")])  # not a positive
        assert _tag(a)._pop[a.catalog.item_of(last)] == a.catalog.popularity()[a.catalog.item_of(last)]
        before = posting(a)
    finally:
        a.close()
    b = _engine(ws)  # a restart: the replayed events' counts reach the channel at start-up
    try:
        assert posting(b) == before
    finally:
        b.close()


def test_a_swapped_in_version_takes_the_counts_served_since(tmp_path: Path) -> None:
    """A version fitted without the events served since (here: refitted on the engine's dataset)
    takes the catalogue's counts when it is swapped in; a publish after the swap reaches it."""
    from notefeed.serve.versions import build_served

    a = _engine(tmp_path / "ws")
    try:
        last = f"n{a.catalog.n_items - 4}"  # the least clicked topic-0 note
        a.ingest([Event(user_id=f"u{j}", note_id=last, ts=3_000_000 + j, type="click") for j in range(6)])
        fresh = build_served(a, None, None)
        ch = [st.component for st in fresh.pipelines["default"].sources if isinstance(st.component, TagInterestChannel)][0]
        topic0 = ch.term_names.index("topic0")
        assert a.catalog.note_ids.index(last) not in ch._posting(topic0)[0]  # fitted without the clicks
        a.swap_served(fresh)
        assert _tag(a) is ch and a.catalog.item_of(last) in ch._posting(topic0)[0]
        a.publish(Note(note_id="p9", author_id="c1", title="x", tags=["knitting"], category="craft"))
        assert ch.n_indexed == a.catalog.n_items
    finally:
        a.close()
