"""Latent-interest page slots: ``llm/interest`` with ``slots > 0`` as a side source, mixed into
the page by :class:`~notefeed.serve.slots.SideSlots` beside the cold-start slots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from notefeed.data.dataset import Dataset
from notefeed.llm.interest import InterestChannel
from notefeed.recall.base import Candidates, UserContext
from notefeed.schema import Note
from notefeed.serve.coldstart import ColdStartSlots
from notefeed.serve.config import ConfigError
from notefeed.serve.engine import Engine
from notefeed.serve.pipeline import CandidateSet, Pipeline, Step
from notefeed.serve.slots import SideSlots, SlotPart, slot_parts

from .conftest import make_config

TAGS = ["a", "b", "c", "d"]


class _FakeLM:
    """Tag names, orthogonal tag embeddings (nothing merges), no tags predicted from text."""

    tags = TAGS

    def embed(self, texts):
        return np.eye(len(TAGS), dtype=np.float32)[[TAGS.index(t) for t in texts]]

    def tag_probs(self, texts):
        return np.zeros((len(texts), len(TAGS)), np.float32)


def _planted(n_items: int, tags: dict[int, str], probs: dict[str, float], **params) -> InterestChannel:
    """A channel without training: every note's model tag probabilities are ``probs``, its
    catalogue tag ``tags.get(item, "a")``."""
    ch = InterestChannel(**params)
    ch.lm = _FakeLM()  # type: ignore[assignment]
    p = np.zeros((n_items, len(TAGS)), np.float32)
    for t, v in probs.items():
        p[:, TAGS.index(t)] = v
    ch.note_probs = sp.csr_matrix(p)
    cols = [TAGS.index(tags.get(i, "a")) for i in range(n_items)]
    ch.item_tags = sp.csr_matrix((np.ones(n_items, np.float32), (np.arange(n_items), cols)), shape=p.shape)
    return ch


class _Main:
    """Ranked candidates: ``items`` in order (recall score falls)."""

    name = "fake/main"

    def __init__(self, items: list[int]) -> None:
        self.items = items

    def recall(self, ctx, k):
        its = self.items[:k]
        return Candidates(self.name, np.array(its), np.linspace(1, 0.1, len(its)))


class _TopRecall:
    name = "fake/top"

    def select(self, ctx, cs, n):
        return np.argsort(-cs.columns["recall"], kind="stable")[:n]


# history 0..4 carries tag a; the model reads c (0.3) and d (0.1) into it as well: latent
# interests. Note 20 carries c, note 21 carries d; every other note carries a.
HIST = UserContext("u", history=np.arange(5))
PROBS = {"a": 0.6, "c": 0.3, "d": 0.1}
LATENT_TAGS = {20: "c", 21: "d"}


def _pipeline(ch: InterestChannel, main: list[int], mixer: bool = True) -> Pipeline:
    steps = [Step("source", _Main(main), 50), Step("source", ch, 10), Step("selector", _TopRecall())]
    parts = slot_parts([ch])
    if mixer and parts:
        steps.append(Step("selector", SideSlots(parts)))
    return Pipeline("t", steps)


def test_latent_interests_are_the_tags_no_recent_note_carries() -> None:
    ch = _planted(30, LATENT_TAGS, PROBS)
    assert [(i.tag, i.novel) for i in ch.interests(HIST)] == [("a", False), ("c", True), ("d", True)]
    assert [i.tag for i in ch.interests(HIST, novel_only=True)] == ["c", "d"]
    side = ch.latent_candidates(HIST, 5)
    assert side.items.tolist() == [20, 21]
    np.testing.assert_allclose(side.columns["interest.score"], [0.3, 0.1], rtol=1e-6)


def test_slot_places_a_latent_note_that_ranking_alone_would_not() -> None:
    main = list(range(5, 20))  # notes of the known interest, ranked
    ch = _planted(30, LATENT_TAGS, PROBS, slots=1)
    assert ch.side and slot_parts([ch]) == [SlotPart("llm/interest", 1, "interest.score")]
    res = _pipeline(ch, main).run(HIST, 5)
    assert not res.errors
    assert res.items.tolist() == [5, 20, 6, 7, 8]  # the best latent note at the spread position 1
    rows = res.trace()["items"]
    assert rows[1]["channels"] == ["llm/interest"]
    assert rows[1]["latent_interest"] == {"score": pytest.approx(0.3), "boosted": True}
    assert "latent_interest" not in rows[0]
    assert [s.name for s in res.stages][-1] == "llm/interest/slots"
    # ranking alone (no mixer): side candidates never reach the page
    assert _pipeline(ch, main, mixer=False).run(HIST, 5).items.tolist() == [5, 6, 7, 8, 9]
    # two slots: both latent notes, spread over the page
    ch2 = _planted(30, LATENT_TAGS, PROBS, slots=2)
    assert _pipeline(ch2, main).run(HIST, 6).items.tolist() == [5, 20, 6, 7, 21, 8]
    # a latent note already seen is filtered out of the side answer
    seen = UserContext("u", history=np.arange(5), seen=np.array([20]))
    assert _pipeline(ch, main).run(seen, 5).items.tolist() == [5, 21, 6, 7, 8]


def test_latent_note_ranked_onto_the_page_uses_the_slot() -> None:
    ch = _planted(30, LATENT_TAGS, PROBS, slots=1)
    res = _pipeline(ch, [21, 5, 6, 7, 8, 9]).run(HIST, 5)
    assert res.items.tolist() == [21, 5, 6, 7, 8]  # 21 ranked in on its own: no note of 20 added
    row = res.trace()["items"][0]
    assert row["channels"] == ["fake/main", "llm/interest"] and row["latent_interest"]["boosted"] is False


def test_slots_zero_is_the_ordinary_channel() -> None:
    ch = _planted(22, LATENT_TAGS, PROBS)  # a-notes 5..19 beside the history
    assert not ch.side and slot_parts([ch]) == []
    c = ch.recall(HIST, 20)
    # every interest weighs in, as before slots existed: the a-notes (0.6), then 20 (c), 21 (d)
    assert type(c) is Candidates and sorted(c.items[:15].tolist()) == list(range(5, 20))
    assert c.items[15:].tolist() == [20, 21]
    np.testing.assert_allclose(c.scores[[0, 15, 16]], [0.6, 0.3, 0.1], rtol=1e-6)
    # in a pipeline it is one more ranked source: the page is ranking's
    res = Pipeline("t", [Step("source", _Main(list(range(5, 20))), 50), Step("source", ch, 10),
                         Step("selector", _TopRecall())]).run(HIST, 5)
    assert len(res.items) == 5 and all("llm/interest" in row for row in res.candidates.channels)
    assert "side" not in res.candidates.columns
    assert [s.name for s in res.stages if s.kind == "selector"] == ["fake/top"]
    # latent_only weighs the latent interests alone: the a-notes drop out
    lo = _planted(22, LATENT_TAGS, PROBS, latent_only=True)
    assert lo.recall(HIST, 20).items.tolist() == [20, 21]
    assert lo.score_items(HIST, np.array([5, 20])).tolist() == pytest.approx([0.0, 0.3])


@pytest.mark.parametrize("bad", [-1, 21, 1.5, True, "2"])
def test_bad_slots_are_clear_errors(bad) -> None:
    with pytest.raises(ValueError, match="slots must be an integer in \\[0, 20\\]"):
        InterestChannel(slots=bad)
    with pytest.raises(ValueError, match="latent_only must be true or false"):
        InterestChannel(latent_only="yes")
    with pytest.raises(ValueError, match="needs at least one slot part"):
        SideSlots([])


def test_coldstart_slots_alone_unchanged() -> None:
    """Cold-start slots alone: the best-scored side notes at the spread positions (1, 1 + n/2),
    a pool note that ranking already put on the page counts against the slots."""
    s = ColdStartSlots(2)
    assert s.name == "coldstart/slots" and s.mixes_side and s.slots == 2
    ranked, side = [10, 11, 12, 13, 14, 15], [20, 21, 22]
    items = np.array(ranked + side)
    main = np.r_[np.ones(6), np.zeros(3)].astype(np.float32)
    cols = {"main": main, "side": 1 - main,
            "coldstart.score": np.r_[np.full(6, np.nan), [0.2, 0.9, 0.5]].astype(np.float32)}
    chans = [["non-personalized/popular"]] * 6 + [["coldstart/bandit"]] * 3
    cs = CandidateSet(items, chans, cols)
    page = items[s.select(UserContext("u", None), cs, 6)].tolist()
    assert page == [10, 21, 11, 12, 22, 13]  # best scores 0.9 then 0.5, the last ranked make room
    cols2 = {**cols, "side": np.r_[[0, 0, 1, 0, 0, 0], np.ones(3)].astype(np.float32)}  # 12 is a pool note
    chans2 = [["non-personalized/popular"]] * 2 + [["coldstart/bandit"]] + [["non-personalized/popular"]] * 3 + chans[6:]
    page = items[s.select(UserContext("u", None), CandidateSet(items, chans2, cols2), 6)].tolist()
    assert page == [10, 21, 11, 12, 13, 14]  # one slot left


def test_coldstart_and_latent_slots_side_by_side_in_the_engine(small_ds: Dataset, tmp_path: Path) -> None:
    n_items = small_ds.n_items
    pop = np.bincount(small_ds.events["item"].to_numpy(), minlength=n_items)
    user = int(np.bincount(small_ds.events["user"].to_numpy()).argmax())
    uid = str(small_ds.users["user_id"].iat[user])
    mine = set(small_ds.events.loc[small_ds.events["user"] == user, "item"].tolist())
    latent = int(next(i for i in np.argsort(pop, kind="stable").tolist() if i not in mine))  # least popular
    ch = _planted(n_items, {latent: "c"}, PROBS, slots=1)
    channels = [{"name": "non-personalized/popular", "quota": 300},
                {"name": "llm/interest", "quota": 10, "params": {"slots": 1}}]
    cfg = make_config(recall={"channels": channels},
                      coldstart={"seed_size": 200, "lookalike_size": 20, "handover_impressions": 5})
    eng = Engine(small_ds, cfg, tmp_path / "ws", fitted={"recall.channels.1": ch})
    try:
        stages = [s.name for s in eng.pipelines["default"].steps]
        assert stages[-1] == "coldstart/slots+llm/interest/slots"
        n = 10
        _, before = eng.feed(uid, n)
        # the empty cold-start pool leaves the latent slot alone: the first spread position,
        # placed by the mixer (ranking did not put it there)
        assert before.items.tolist()[1] == latent and before.trace()["items"][1]["latent_interest"]["boosted"]
        ranked_before = [i for i in before.items.tolist() if i != latent]
        cat = str(small_ds.notes["category"].iat[int(small_ds.events.loc[small_ds.events["user"] == user, "item"]
                                                     .mode().iat[0])])
        eng.publish(Note(note_id="cs-new", author_id="c-new", category=cat, tags=[]), 10)
        new = eng.catalog.item_of("cs-new")
        _, res = eng.feed(uid, n)
        page = res.items.tolist()
        # the cold-start note at the first spread position, the latent note at the second
        assert page[1] == new and page[1 + n // 2] == latent, page
        # the other notes are ranking's page, cut by one more
        assert [i for i in page if i not in (new, latent)] == ranked_before[: n - 2]
        rows = res.trace()["items"]
        assert rows[1]["coldstart"]["boosted"] and rows[1 + n // 2]["latent_interest"]["boosted"]
    finally:
        eng.close()


def test_config_errors_name_the_field(small_ds: Dataset, tmp_path: Path) -> None:
    from notefeed.serve.factory import create_component

    with pytest.raises(ConfigError, match="recall.channels.1.params: llm/interest: slots"):
        create_component(InterestChannel, {"slots": -2}, "recall.channels.1.params")


# latent_level: category. Tags a and b belong to category X (the history's), c to Y, d to Z;
# b is the strongest latent *tag* but of a category the user already reads.
CAT_PROBS = {"a": 0.6, "b": 0.4, "c": 0.3, "d": 0.1}
CAT_TAGS = {20: "b", 21: "c", 22: "d", 23: "a", 24: "c"}
CATS = {21: "Y", 22: "Z", 23: "Y", 24: "Y"}  # every other note: X


def _planted_cat(**params) -> InterestChannel:
    ch = _planted(30, CAT_TAGS, CAT_PROBS, **params)
    ch.item_cat = ch._cat_codes([CATS.get(i, "X") for i in range(30)])
    return ch


def test_category_level_latent_notes_are_of_categories_the_recent_notes_lack() -> None:
    tag = _planted_cat(slots=1)
    assert tag.latent_candidates(HIST, 5).items.tolist()[0] == 20  # tag level: b, category X
    ch = _planted_cat(slots=1, latent_level="category")
    assert [ch.categories[c] for c in ch.tag_categories()] == ["X", "X", "Y", "Z"]  # a: 23 is Y, 5 notes X
    np.testing.assert_allclose(ch.latent_categories(HIST), [0.0, 0.3, 0.1], rtol=1e-6)
    side = ch.latent_candidates(HIST, 5)
    # Y's notes (23 carries a, the strongest inferred tag, then 21, 24 by catalogue order), then
    # Z's, the best note of each category first; X never (20 carries the latent tag b but is of
    # the recent notes' category)
    assert side.items.tolist() == [23, 22, 21, 24]
    np.testing.assert_allclose(side.columns["interest.score"], [0.3, 0.1, 0.3, 0.3], rtol=1e-6)
    assert slot_parts([ch])[0].groups is not None and slot_parts([tag])[0].groups is None
    assert _pipeline(ch, list(range(5, 15))).run(HIST, 5).items.tolist() == [5, 23, 6, 7, 8]
    # the page mixer skips a category the ranked page shows: Y is on it through 23 (seen, so
    # not a side candidate), so Z's 22 rather than Y's 21
    seen = UserContext("u", history=np.arange(5), seen=np.array([23]))
    assert _pipeline(ch, [23] + list(range(5, 15))).run(seen, 5).items.tolist() == [23, 22, 5, 6, 7]
    # new notes get their category; the state keeps it
    ch.add_items(pd.DataFrame({"title": ["t"], "text": ["x"], "tags": [["d"]], "category": ["W"]}))
    assert ch.categories[ch.item_cat[-1]] == "W" and ch._groups(np.array([30, 99])).tolist() == [3, -1]
    with pytest.raises(ValueError, match="latent_level must be one of"):
        InterestChannel(latent_level="topic")


def test_slot_position_end_keeps_the_ranked_positions() -> None:
    ch = _planted_cat(slots=1, latent_level="category", slot_position="end")
    assert slot_parts([ch])[0].at_end and not slot_parts([_planted_cat(slots=1)])[0].at_end
    assert _pipeline(ch, list(range(5, 15))).run(HIST, 5).items.tolist() == [5, 6, 7, 8, 23]
    # beside a spread part: the spread picks are inserted into the page short of the end ones
    parts = [SlotPart("fake/main", 1, "recall"), slot_parts([ch])[0]]
    items = np.array([5, 6, 7, 8, 9, 30, 23])
    cols = {"main": np.r_[np.ones(5), 0, 0].astype(np.float32), "side": np.r_[np.zeros(5), 1, 1].astype(np.float32),
            "recall": np.r_[np.zeros(5), 1, 0].astype(np.float32),
            "interest.score": np.r_[np.full(6, np.nan), 0.3].astype(np.float32)}
    cs = CandidateSet(items, [["x"]] * 5 + [["fake/main"], ["llm/interest"]], cols)
    assert items[SideSlots(parts).select(HIST, cs, 5)].tolist() == [5, 30, 6, 7, 23]
    with pytest.raises(ValueError, match="slot_position must be one of"):
        InterestChannel(slot_position="top")


def test_min_score_floor_gives_weak_guesses_no_latent_slot() -> None:
    """``min_score``: a latent candidate only when its latent score (``interest.score``) reaches
    the floor; a user whose best latent category is below it keeps the ranked page."""
    ch = _planted_cat(slots=1, latent_level="category", slot_position="end", min_score=0.2)
    # a second user reads notes 25..29 (category X), whose model tags name Y (c) and Z (d) weakly
    p = ch.note_probs.toarray()
    p[25:30] = [0.6, 0.0, 0.05, 0.02]
    ch.note_probs = sp.csr_matrix(p)
    weak = UserContext("w", history=np.arange(25, 30))
    np.testing.assert_allclose(ch.latent_categories(weak), [0.0, 0.05, 0.02], rtol=1e-5)
    np.testing.assert_allclose(ch.latent_categories(HIST), [0.0, 0.3, 0.1], rtol=1e-6)
    # the strong user: Y (0.3) clears the floor, Z (0.1) does not
    side = ch.latent_candidates(HIST, 5)
    assert side.items.tolist() == [23, 21, 24]
    np.testing.assert_allclose(side.columns["interest.score"], [0.3, 0.3, 0.3], rtol=1e-6)
    assert _pipeline(ch, list(range(5, 15))).run(HIST, 5).items.tolist() == [5, 6, 7, 8, 23]
    # the weak user: no side candidates, the page stays the ranked one
    assert ch.latent_candidates(weak, 5).items.size == 0
    assert _pipeline(ch, list(range(5, 15))).run(weak, 5).items.tolist() == [5, 6, 7, 8, 9]
    # without the floor (the default) the weak user gets the slot
    nofloor = _planted_cat(slots=1, latent_level="category", slot_position="end")
    nofloor.note_probs = ch.note_probs
    assert nofloor.latent_candidates(weak, 5).items.tolist() == [23, 22, 21, 24]
    # the floor is inclusive; above every score nobody gets a slot
    assert _planted_cat(slots=1, latent_level="category", min_score=0.3).latent_candidates(HIST, 5).items.size == 3
    assert _planted_cat(slots=1, latent_level="category", min_score=0.35).latent_candidates(HIST, 5).items.size == 0
    # tag level too: c (0.3) clears 0.2, d (0.1) does not
    assert _planted(30, LATENT_TAGS, PROBS, slots=1, min_score=0.2).latent_candidates(HIST, 5).items.tolist() == [20]


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), True, "0.5", None])
def test_bad_min_score_is_a_clear_error(bad) -> None:
    with pytest.raises(ValueError, match="llm/interest: min_score must be a finite number >= 0"):
        InterestChannel(min_score=bad)


def test_slot_rank_engagement_introduces_a_category_by_its_most_engaging_note() -> None:
    """``slot_rank: engagement``: within a latent category the notes go by their smoothed click
    rate; the categories' order and the best-of-each-category-first interleaving stay."""
    ch = _planted_cat(slots=1, latent_level="category", slot_rank="engagement")
    ch.item_rate = np.zeros(30, np.float32)
    ch.item_rate[[21, 23, 24, 22]] = [0.2, 0.1, 0.3, 0.05]
    side = ch.latent_candidates(HIST, 5)
    assert side.items.tolist() == [24, 22, 21, 23]  # Y by rate (24, 21, 23), Z's 22 second
    np.testing.assert_allclose(side.columns["interest.score"], [0.3, 0.1, 0.3, 0.3], rtol=1e-6)
    # equal rates fall back to the tag match (23 carries the strongest inferred tag)
    ch.item_rate[:] = 0.1
    assert ch.latent_candidates(HIST, 5).items.tolist() == [23, 22, 21, 24]
    # a published note has no evidence: it gets the mean rate
    ch.item_rate[[21, 23, 24, 22]] = [0.2, 0.1, 0.3, 0.05]
    mean = float(ch.item_rate.mean())
    ch.add_items(pd.DataFrame({"title": ["t"], "text": ["x"], "tags": [["c"]], "category": ["Y"]}))
    assert ch.item_rate.size == 31 and ch.item_rate[30] == pytest.approx(mean)
    # the default ranks by tag match whatever the rates
    match = _planted_cat(slots=1, latent_level="category")
    match.item_rate = ch.item_rate[:30].copy()
    assert match.latent_candidates(HIST, 5).items.tolist() == [23, 22, 21, 24]
    with pytest.raises(ValueError, match="slot_rank must be one of"):
        InterestChannel(latent_level="category", slot_rank="ctr")
    with pytest.raises(ValueError, match="needs latent_level: category"):
        InterestChannel(slot_rank="engagement")


def test_engagement_rates_smooth_clicks_per_impression() -> None:
    from notefeed.llm.interest import RATE_PRIOR_IMPRESSIONS, engagement_rates

    notes = pd.DataFrame({"note_id": ["n0", "n1", "n2"], "author_id": ["c0"] * 3, "title": ["x"] * 3,
                          "text": ["x"] * 3, "tags": [[]] * 3, "category": ["X"] * 3,
                          "created_at": [1_000_000] * 3})
    rows = [("u0", "n0", 2_000_000 + j, "impression") for j in range(10)]
    rows += [("u0", "n0", 2_000_100 + j, "click") for j in range(5)]
    rows += [("u1", "n1", 2_000_200 + j, "impression") for j in range(30)]
    rows += [("u1", "n1", 2_000_300, "click"), ("u1", "n1", 2_000_301, "like")]
    ev = pd.DataFrame(rows, columns=["user_id", "note_id", "ts", "type"])
    ds = Dataset.build("rates", ev, notes=notes)
    m, mean = RATE_PRIOR_IMPRESSIONS, 6 / 40  # 6 clicks over 40 impressions; likes are not clicks
    np.testing.assert_allclose(engagement_rates(ds), [(5 + m * mean) / (10 + m), (1 + m * mean) / (30 + m), mean],
                               rtol=1e-6)
    # a log without impressions: popularity (log1p of each note's positives)
    pos = ds.events[ds.events["type"] != "impression"]
    no_imp = Dataset.build("rates", pos.assign(user_id=pos["user"].map(lambda u: f"u{u}"),
                                               note_id=pos["item"].map(lambda i: f"n{i}"))
                           [["user_id", "note_id", "ts", "type"]], notes=notes)
    np.testing.assert_allclose(engagement_rates(no_imp), np.log1p([5, 1, 0]), rtol=1e-6)
