"""``tag/interest`` with notes published and edited, and positive events served, after the fit:
the same recall as a refit on the catalogue with those notes and events, and safe under a reader."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pandas as pd
import pytest

from notefeed.models.artifacts import load_component, save_component
from notefeed.recall.base import UserContext
from notefeed.recall.tag import TagInterestChannel
from tests.recall.conftest import make_community

# small postings so that some terms are full (topic tags: 50 notes) and some are not (sub tags: ~28)
PARAMS = {"postings": 30, "n_interests": 1000}


def _new_notes(n0: int) -> pd.DataFrame:
    return pd.DataFrame({
        "note_id": [f"p{j}" for j in range(5)],
        "author_id": ["c1", "c2", "c3", "new-creator", "c4"],
        "title": ["hiking again", "a new thing", "noodles", "fresh", "no tags"],
        "tags": [["topic0", "sub3"], ["brand-new-tag"], ["Sub5 ", "topic2", "brand-new-tag"], [], []],
        "category": ["cat0", "cat9", "cat2", "", "cat1"],
        "created_at": [3_000_000 + j for j in range(5)],
    })


def _with_notes(ds, extra: pd.DataFrame):
    notes = pd.concat([ds.notes, extra.reindex(columns=ds.notes.columns)], ignore_index=True)
    notes["tags"] = [list(t) if isinstance(t, list) else [] for t in notes["tags"]]
    notes["category"] = notes["category"].fillna("").astype(str)
    return dataclasses.replace(ds, notes=notes)


def _contexts(n: int) -> list[UserContext]:
    return [UserContext("u0", 0, history=np.array([0, 4, n, 8]), ts=3_000_000),
            UserContext("fan", None, history=np.array([n + 1, n + 2]), ts=3_000_000),
            UserContext("u5", 5, history=np.array([1, 5, 9]), ts=3_000_000),
            UserContext("lone", None, history=np.array([n + 3]), ts=3_000_000),  # no terms at all
            UserContext("mixed", None, history=np.array([n + 4, 2, n + 1, 6, 10]), ts=3_000_000)]


def _same_recall(a: TagInterestChannel, b: TagInterestChannel, contexts: list[UserContext]) -> None:
    for ctx in contexts:
        x, y = a.recall(ctx, 500), b.recall(ctx, 500)
        order_x, order_y = np.argsort(x.items), np.argsort(y.items)
        np.testing.assert_array_equal(x.items[order_x], y.items[order_y], err_msg=ctx.user_id)
        np.testing.assert_allclose(x.scores[order_x], y.scores[order_y], rtol=1e-5, err_msg=ctx.user_id)


def test_published_notes_recall_as_a_refit_would():
    ds = make_community()
    n, extra = ds.n_items, _new_notes(ds.n_items)
    ch = TagInterestChannel(**PARAMS).fit(ds)
    before = ch.recall(_contexts(n)[0], 500)
    assert n not in before.items
    got = ch.add_items(extra.iloc[:2])
    got2 = ch.add_items(extra.iloc[2:])
    assert got.tolist() == [n, n + 1] and got2.tolist() == [n + 2, n + 3, n + 4] and ch.n_indexed == n + 5
    refit = TagInterestChannel(**PARAMS).fit(_with_notes(ds, extra))
    _same_recall(ch, refit, _contexts(n))
    # the new note's terms count for a user who engaged with it ...
    fan = ch.recall(UserContext("fan", None, history=np.array([n + 1])), 500)
    assert n + 2 in fan.items  # through "brand-new-tag", which only new notes have
    # ... a full posting list (topic0: 50 notes, 30 kept) does not take a note with no engagement,
    # one that is not full (sub3: about 28 notes) does
    names = ch.term_names
    topic0, sub3 = ch._posting(names.index("topic0"))[0], ch._posting(names.index("sub3"))[0]
    assert n not in topic0 and len(topic0) == 30 and n in sub3
    # saved with the changes, loaded: the same recall
    back = TagInterestChannel.from_state(*ch.to_state())
    _same_recall(back, ch, _contexts(n))


def test_edited_notes_recall_as_a_refit_would():
    ds = make_community()
    n = ds.n_items
    ch = TagInterestChannel(**PARAMS).fit(ds)
    ch.add_items(_new_notes(n))
    # a popular fitted note moves to other tags; a new note gets tags; another loses its category
    edits = pd.DataFrame({"tags": [["sub6", "edited-tag"], ["topic1"], []],
                          "category": ["cat3", "cat1", ""]})
    ch.replace_items(np.array([0, n + 3, 5]), edits)
    notes = _with_notes(ds, _new_notes(n)).notes.copy()
    for i, (t, c) in zip([0, n + 3, 5], zip(edits["tags"], edits["category"], strict=True), strict=True):
        notes.at[i, "tags"], notes.at[i, "category"] = t, c
    refit = TagInterestChannel(**PARAMS).fit(dataclasses.replace(ds, notes=notes))
    _same_recall(ch, refit, _contexts(n) + [UserContext("edited", None, history=np.array([0, 5]))])
    # the note left topic0, whose postings take the next-best note in its place
    p0 = ch._posting(ch.term_names.index("topic0"))[0]
    assert 0 not in p0 and len(p0) == 30
    with pytest.raises(ValueError, match="outside"):
        ch.replace_items(np.array([n + 5]), edits.iloc[:1])


def test_older_state_without_scores_adds_interests_not_postings(tmp_path):
    ds = make_community()
    ch = TagInterestChannel(**PARAMS).fit(ds)
    params, arrays = ch.to_state()
    arrays.pop("item_pop")
    old = TagInterestChannel.from_state(params, arrays)
    n = ds.n_items
    old.add_items(_new_notes(n))
    assert old.n_indexed == n + 5
    fan = old.recall(UserContext("fan", None, history=np.array([n + 1, n + 2, 3])), 500)
    fitted = ch.recall(UserContext("fan", None, history=np.array([3])), 500)
    assert len(fan.items) and n + 1 not in fan.items  # "brand-new-tag" has no postings, topic2's still serve
    assert set(fitted.items.tolist()) <= set(fan.items.tolist())
    back = load_component(save_component(old, tmp_path / "c"))
    assert back.item_pop is None and back.n_indexed == n + 5


def test_recall_while_notes_are_added():
    ds = make_community()
    ch = TagInterestChannel(postings=40).fit(ds)
    n, errors = ds.n_items, []
    stop = threading.Event()

    def read() -> None:
        rng = np.random.default_rng(0)
        while not stop.is_set():
            try:
                hist = rng.integers(0, ch.n_indexed, 8)
                ch.recall(UserContext("r", None, history=hist), 50)
            except Exception as e:  # pragma: no cover - the failure being tested for
                errors.append(e)
                return

    t = threading.Thread(target=read)
    t.start()
    for j in range(200):
        ch.add_items(pd.DataFrame({"note_id": [f"q{j}"], "tags": [[f"t{j % 13}", "topic1"]], "category": [f"cat{j % 5}"]}))
        if j % 20 == 0:
            ch.replace_items(np.array([j]), pd.DataFrame({"tags": [[f"t{j % 7}"]], "category": ["cat0"]}))
    stop.set()
    t.join()
    assert not errors, errors[0]
    assert ch.n_indexed == n + 200


def test_random_publishes_and_edits_recall_as_a_refit_would():
    """Small posting lists (cuts through ties of equal engagement), random tags, random edits of
    fitted and published notes, random clicks: the channel against a refit, for random histories."""
    rng = np.random.default_rng(7)
    tags = [f"g{j}" for j in range(6)]
    for trial in range(6):
        ds = make_community(n_users=40, n_notes=60, per_user=5, seed=trial)
        params = {"postings": int(rng.integers(3, 12)), "n_interests": 1000}
        ch = TagInterestChannel(**params).fit(ds)
        n = ds.n_items
        pick = lambda: [str(x) for x in rng.choice(tags + ["topic1", "sub2"], int(rng.integers(0, 3)), replace=False)]  # noqa: E731
        extra = pd.DataFrame({"note_id": [f"p{j}" for j in range(8)], "tags": [pick() for _ in range(8)],
                              "category": [f"cat{int(rng.integers(0, 5))}" for _ in range(8)]})
        ch.add_items(extra.iloc[:5])
        notes = _with_notes(ds, extra).notes.copy()
        for _ in range(6):  # edits between publishes, of fitted and published notes
            i = int(rng.integers(0, n + 5))
            t, c = pick(), f"cat{int(rng.integers(0, 5))}"
            ch.replace_items(np.array([i]), pd.DataFrame({"tags": [t], "category": [c]}))
            notes.at[i, "tags"], notes.at[i, "category"] = t, c
        ch.add_items(extra.iloc[5:])
        clicks = rng.integers(0, n + 8, int(rng.integers(1, 30))).tolist()  # positives served since
        ch.observe_positives(np.asarray(clicks))
        refit = TagInterestChannel(**params).fit(_with_clicks(dataclasses.replace(ds, notes=notes), clicks))
        ctxs = [UserContext(f"r{j}", None, history=rng.integers(0, n + 8, int(rng.integers(1, 6)))) for j in range(15)]
        _same_recall(ch, refit, ctxs)


def _with_clicks(ds, items: list[int]):
    """``ds`` with one more click on each of ``items`` (repeats count)."""
    extra = ds.events.iloc[: len(items)].copy()
    extra["item"] = np.asarray(items, extra["item"].dtype)
    extra["ts"] = ds.events["ts"].max() + 1
    return dataclasses.replace(ds, events=pd.concat([ds.events, extra], ignore_index=True))


def test_positives_served_since_recall_as_a_refit_would():
    ds = make_community()
    n = ds.n_items
    extra = _new_notes(n)
    ch = TagInterestChannel(**PARAMS).fit(ds)
    off = TagInterestChannel(**PARAMS, follow_engagement=False).fit(ds)
    for c in (ch, off):
        c.add_items(extra)
    # clicks on unpopular topic-0 notes (past topic0's 30-note cut) and on a new note, some twice
    topic0 = np.flatnonzero(np.arange(n) % 4 == 0)
    clicks = [int(topic0[-1])] * 4 + [int(topic0[-2])] * 3 + [n, n, n] + [5]
    assert int(topic0[-1]) not in ch._posting(ch.term_names.index("topic0"))[0]
    ch.observe_positives(np.asarray(clicks[:5]))
    ch.observe_positives(np.asarray(clicks[5:] + [n + 99, -1]))  # unknown items are skipped
    off.observe_positives(np.asarray(clicks))
    refit = TagInterestChannel(**PARAMS).fit(_with_clicks(_with_notes(ds, extra), clicks))
    _same_recall(ch, refit, _contexts(n))
    p0 = ch._posting(ch.term_names.index("topic0"))[0]
    assert int(topic0[-1]) in p0  # engaged since: it beats the list's last notes
    assert ch._pop[n] == 3 and off._pop[n] == 0
    before = TagInterestChannel(**PARAMS).fit(_with_notes(ds, extra))
    _same_recall(off, before, _contexts(n))  # follow_engagement false: the fit's counts
    # the serving catalogue's counts, up and down (a version fitted on more events than served)
    more = TagInterestChannel(**PARAMS).fit(_with_clicks(_with_notes(ds, extra), clicks))
    counts = np.bincount(ds.select_events()["item"].to_numpy(), minlength=n + 5).astype(np.float32)
    counts[7] += 2
    more.sync_positives(counts)
    want = TagInterestChannel(**PARAMS).fit(_with_clicks(_with_notes(ds, extra), [7, 7]))
    _same_recall(more, want, _contexts(n) + [UserContext("t3", None, history=np.array([3, 11, 15, 19, 35]))])
    back = TagInterestChannel.from_state(*ch.to_state())  # saved with the counts
    _same_recall(back, ch, _contexts(n))
    assert back.follow_engagement and not TagInterestChannel.from_state(*off.to_state()).follow_engagement


def test_replace_items_checks_its_items():
    """The channels' ``replace_items`` check their items by one rule (``edited_items``)."""
    from notefeed.recall._common import edited_items

    notes = pd.DataFrame({"tags": [["a"], ["b"]], "category": ["x", "y"]})
    assert edited_items("c", [1, 0], notes, 2).dtype == np.int64
    with pytest.raises(ValueError, match="c: 1 items for 2 notes"):
        edited_items("c", [0], notes, 2)
    with pytest.raises(ValueError, match=r"c: replace_items\(\) of items outside 0..1"):
        edited_items("c", [0, 2], notes, 2)
    assert edited_items("c", [1, 1], notes, 2).tolist() == [1, 1]
    with pytest.raises(ValueError, match="with an item twice"):
        edited_items("c", [1, 1], notes, 2, unique=True)
    ch = TagInterestChannel(**PARAMS).fit(make_community())
    with pytest.raises(ValueError, match="1 items for 2 notes"):
        ch.replace_items(np.array([0]), notes)
