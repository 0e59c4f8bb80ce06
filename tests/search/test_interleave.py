"""Team-draft interleaving of RRF and the learned fusion: the page kernel, the verdict, the search
log's teams, the pipeline's interleaved pages, and a server that promotes the learned fusion once
its interleaved pages' clicks show it wins."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from notefeed.search import SearchConfig, SearchPipeline
from notefeed.search.fusion import FEATURES, LearnedFusion
from notefeed.search.interleave import TEAMS, interleaving_verdict, page_outcome, sign_test_p, team_draft
from notefeed.search.querylog import SearchLog
from tests.search.conftest import AUTH, TOKEN, make_notes


def _rankings(draw_a: list[int], draw_b: list[int]) -> tuple[np.ndarray, np.ndarray]:
    return np.array(list(dict.fromkeys(draw_a)), np.int64), np.array(list(dict.fromkeys(draw_b)), np.int64)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 30), max_size=25), st.lists(st.integers(0, 30), max_size=25), st.integers(1, 40),
       st.integers(0, 2**32 - 1))
def test_team_draft_takes_each_teams_best_in_turn(ra: list[int], rb: list[int], n: int, seed: int) -> None:
    a, b = _rankings(ra, rb)
    items, teams = team_draft(a, b, n, np.random.default_rng(seed))
    assert len(items) == len(teams) == min(n, len(set(a.tolist()) | set(b.tolist())))
    assert len(set(items.tolist())) == len(items)  # no note twice
    for t, ranking in ((0, a), (1, b)):
        mine = items[teams == t].tolist()
        assert set(mine) <= set(ranking.tolist())
        # each pick is the team's best note not yet on the page when it picked
        for k in np.flatnonzero(teams == t).tolist():
            before = set(items[:k].tolist())
            assert items[k] == next(x for x in ranking.tolist() if x not in before)
    # while both rankings have notes left, the teams' counts never differ by more than one
    for k in range(len(items)):
        before = set(items[:k].tolist())
        if set(a.tolist()) - before and set(b.tolist()) - before:
            c1 = int((teams[:k] == 1).sum())
            assert abs(c1 - (k - c1)) <= 1


def test_team_draft_of_one_ranking_is_that_ranking_and_positions_are_shared_evenly() -> None:
    a = np.arange(10)
    items, teams = team_draft(a, a.copy(), 10, np.random.default_rng(0))
    assert items.tolist() == a.tolist()
    rng = np.random.default_rng(1)
    share = np.mean([team_draft(a, a[::-1].copy(), 10, rng)[1] for _ in range(4000)], axis=0)
    assert np.all(np.abs(share - 0.5) < 0.04), share  # every position as often each team's: no position bias
    items, teams = team_draft(np.array([5]), np.array([1, 2, 3]), 3, np.random.default_rng(0))
    assert sorted(items.tolist()) == [1, 2, 5] and teams.tolist().count(1) == 2  # a used up: b goes on
    items, teams = team_draft(np.zeros(0, np.int64), np.zeros(0, np.int64), 5, np.random.default_rng(0))
    assert len(items) == len(teams) == 0


def test_page_outcome_and_sign_test() -> None:
    assert page_outcome([0, 1, 0, 1], [False, True, False, False]) == 1
    assert page_outcome([0, 1, 0, 1], [True, True, True, False]) == -1
    assert page_outcome([0, 1], [True, True]) == 0 and page_outcome([0, 1], [False, False]) == 0
    with pytest.raises(ValueError, match="one entry per shown note"):
        page_outcome([0, 1], [True])
    from scipy.stats import binomtest

    for w, lo in [(0, 0), (5, 5), (60, 40), (30, 70), (520, 480), (0, 9), (1200, 1050)]:
        want = binomtest(w, w + lo, 0.5).pvalue if w + lo else 1.0
        assert sign_test_p(w, lo) == pytest.approx(want, rel=1e-9, abs=1e-12), (w, lo)


def _page(ts: float, teams: list[str], clicked_at: list[int], interleaved: bool = True) -> dict:
    items = [f"n{ts}-{k}" for k in range(len(teams))]
    return {"ts": ts, "items": items, "teams": teams if interleaved else None,
            "clicked": [items[k] for k in clicked_at]}


def test_the_verdict_waits_for_its_pages_then_tests_once() -> None:
    win = [_page(float(k), ["rrf", "learned"], [1]) for k in range(70)]  # the learned note clicked
    lose = [_page(100.0 + k, ["learned", "rrf"], [1]) for k in range(30)]
    noise = [_page(200.0 + k, ["rrf", "learned"], []) for k in range(50)]  # no click: not counted
    noise += [_page(300.0 + k, ["rrf", "learned"], [1], interleaved=False) for k in range(50)]  # not interleaved
    pages = sorted(win + lose + noise, key=lambda p: p["ts"])
    v = interleaving_verdict(pages, pages_needed=101)
    assert v["verdict"] == "collecting" and v["pages"] == 100 and v["learned_wins"] == 70 and v["rrf_wins"] == 30
    v = interleaving_verdict(pages, pages_needed=100)
    assert v["verdict"] == "learned" and v["p_value"] < 0.001 and v["learned_win_share"] == pytest.approx(0.7)
    # only the first pages_needed are counted: the 30 losses come after the first 60 pages
    assert interleaving_verdict(pages, pages_needed=60)["rrf_wins"] == 0
    flip = [{**p, "teams": p["teams"][::-1] if p["teams"] else None} for p in pages]
    assert interleaving_verdict(flip, pages_needed=100)["verdict"] == "rrf"
    even = sorted(win[:50] + lose[:30] + [_page(400.0 + k, ["learned", "rrf"], [1]) for k in range(20)],
                  key=lambda p: p["ts"])
    v = interleaving_verdict(even, pages_needed=100)
    assert v["verdict"] == "no difference" and v["learned_wins"] == v["rrf_wins"] == 50
    ties = [_page(float(k), ["rrf", "learned"], [0, 1]) for k in range(10)]
    assert interleaving_verdict(ties, pages_needed=10)["ties"] == 10
    assert interleaving_verdict(pages, pages_needed=10, since_ts=100.0)["rrf_wins"] == 10


def test_interleaving_finds_the_better_ranking_under_position_bias() -> None:
    """A simulated user examines position p with probability (1 + p)^-0.35 and clicks by grade;
    the ranking that orders notes by grade wins the interleaving against one that does not,
    though both put relevant notes first."""
    from notefeed.search.clickstudy import simulate_clicks

    rng = np.random.default_rng(3)
    pages = []
    for k in range(600):
        grade = rng.integers(0, 4, 40)
        good = np.argsort(-grade, kind="stable")
        worse = np.argsort(-(grade >= 2).astype(float) - 0.01 * rng.random(40))  # relevant first, but grades 2 and 3 mixed
        items, teams = team_draft(worse, good, 10, rng)  # team 1 = learned = the better ranking
        c = simulate_clicks(grade[items], rng.random((len(items), 3)))
        pages.append({"ts": float(k), "items": [str(i) for i in items], "teams": [TEAMS[t] for t in teams],
                      "clicked": [str(items[p]) for p in np.flatnonzero(c)]})
    v = interleaving_verdict(pages, pages_needed=400)
    assert v["verdict"] == "learned", v
    same = [{**p, "teams": [TEAMS[int(x)] for x in rng.integers(0, 2, len(p["items"]))]} for p in pages]
    assert interleaving_verdict(same, pages_needed=400)["verdict"] == "no difference"  # teams drawn at random


def test_the_search_log_keeps_teams_and_opens_a_log_from_before(tmp_path: Path) -> None:
    old = tmp_path / "old.sqlite"
    db = sqlite3.connect(old)
    db.executescript("CREATE TABLE queries (request_id TEXT PRIMARY KEY, user_id TEXT, query TEXT NOT NULL, "
                     "ts REAL NOT NULL, items TEXT NOT NULL);"
                     "INSERT INTO queries VALUES ('r0', 'u', 'coffee', 1.0, '[\"n1\", \"n2\"]');")
    db.commit()
    db.close()
    log = SearchLog(old)  # the column is added; the old row stays
    log.log_query("r1", "u", "tea", ["n3", "n4"], ts=2.0, teams=["learned", "rrf"])
    log.log_query("r2", None, "tea", ["n5"], ts=3.0)
    log.log_clicks([("r1", "n4", "u", 2.5, "click", 1), ("r0", "n1", "u", 1.5, "click", 0)])
    with pytest.raises(ValueError, match="teams: 1 for 2 notes"):
        log.log_query("r3", "u", "x", ["a", "b"], teams=["rrf"])
    pages = log.pages()
    assert [p["request_id"] for p in pages] == ["r0", "r1", "r2"]
    assert pages[0]["teams"] is None and pages[1]["teams"] == ["learned", "rrf"] and pages[1]["clicked"] == ["n4"]
    assert [p["request_id"] for p in log.pages(interleaved=True)] == ["r1"]
    assert [p["request_id"] for p in log.pages(since_ts=1.5)] == ["r1", "r2"]
    assert log.pages(interleaved=True, since_ts=2.5) == []
    assert log.pages(interleaved=True)[0]["clicked"] == ["n4"]
    log.close()
    SearchLog(old).close()  # opened again: the column is there already


def _uncertified(pipe: SearchPipeline, seed: int = 0) -> LearnedFusion:
    rng = np.random.default_rng(seed)
    f = LearnedFusion(model="linear", weights=np.r_[rng.normal(size=len(FEATURES)), 0.0],
                      meta={"source": "search log", "beats_rrf": False, "trained_at": 0.0})
    pipe.fusion = f
    return f


def test_the_pipeline_interleaves_while_auto_has_no_verdict() -> None:
    pipe = SearchPipeline.build(make_notes(), SearchConfig(dense_dim=8, fusion="auto", interleave_share=1.0))
    assert not pipe.interleaving()  # no trained fusion
    f = _uncertified(pipe)
    assert pipe.interleaving() and pipe.fusion_status()["interleaving"] == 1.0
    pipe._rand = random.Random(0)
    res = pipe.search("coffee", 6, explain=True)
    assert res.fusion == "interleave" and res.teams is not None and len(res.teams) == len(res.items)
    rrf = pipe.search("coffee", 50, fusion="rrf").items.tolist()
    learned = pipe.search("coffee", 50, fusion="learned").items.tolist()
    for i, t in zip(res.items.tolist(), res.teams, strict=True):
        assert i in (rrf if t == "rrf" else learned)
    assert [it["team"] for it in res.trace["items"]] == res.teams  # type: ignore[index]
    assert res.scores.tolist() == sorted(res.scores.tolist(), reverse=True)
    gone = np.sort(res.items[:2])
    assert not set(pipe.search("coffee", 6, exclude=gone).items.tolist()) & set(gone.tolist())
    for verdict, serves in (("learned", "learned"), ("rrf", "rrf"), ("no difference", "rrf")):
        f.meta = {**f.meta, "interleaving": {"verdict": verdict}}
        assert pipe.serving_fusion() == serves and not pipe.interleaving()
        assert pipe.search("coffee", 3).fusion == serves
        assert verdict.split()[0] in pipe.fusion_status()["reason"]
    f.meta = {**f.meta, "interleaving": {"verdict": "collecting"}}
    assert pipe.interleaving()
    pipe.config = pipe.config.with_overrides(interleave_share=0.0)
    assert not pipe.interleaving() and pipe.search("coffee", 3).fusion == "rrf"
    pipe.config = pipe.config.with_overrides(interleave_share=1.0, fusion="rrf")
    assert not pipe.interleaving()
    assert pipe.search("coffee", 3, fusion="interleave").fusion == "interleave"  # asked for explicitly
    pipe.fusion = None
    with pytest.raises(Exception, match="interleave"):
        pipe.search("coffee", 3, fusion="interleave")


def test_a_server_promotes_the_fusion_that_wins_the_interleaving(tmp_path: Path, monkeypatch) -> None:
    """auto with an uncertified fusion.json: every search interleaves (share 1), the pages and
    their teams are logged, clicks come back as events; once the configured number of clicked
    pages favour the learned fusion, the server serves it and stops interleaving."""
    import notefeed.serve.search as S
    from notefeed.data.dataset import Dataset
    from notefeed.serve.app import create_app
    from notefeed.serve.config import builtin_config
    from notefeed.serve.engine import Engine, popular_config

    monkeypatch.setattr(S, "INTERLEAVE_CHECK_S", 0.0)
    ws = tmp_path / "ws"
    (ws / "search").mkdir(parents=True)
    trainer = SearchPipeline.build(make_notes(), SearchConfig(dense_dim=8))
    _uncertified(trainer).save(ws / "search" / "fusion.json")
    ev = pd.DataFrame({"user_id": ["u"], "note_id": ["n0"], "ts": [0], "type": ["like"]})
    e = Engine(Dataset.build("cf", ev, notes=make_notes()),
               popular_config(builtin_config().with_overrides(api={"token": TOKEN})), ws)
    e.search = S.SearchService(e, SearchConfig(dense_dim=8, fusion="auto", interleave_share=1.0,  # type: ignore[attr-defined]
                                               interleave_pages=12))
    try:
        with TestClient(create_app(e)) as c:
            served = 0
            for k in range(40):
                r = c.get("/v1/search", params={"q": ["coffee", "paris", "tea", "shoes"][k % 4], "user_id": "u"},
                          headers=AUTH)
                assert r.status_code == 200, r.text
                body = r.json()
                if body["fusion"] != "interleave":
                    break
                served += 1
                rid = body["request_id"]
                e.side_effects.drain(5.0)  # the page is logged
                row = e.search.log.db.execute("SELECT teams FROM queries WHERE request_id = ?", (rid,)).fetchone()
                teams = json.loads(row[0])
                assert len(teams) == len(body["items"])
                if "learned" in teams:  # the user clicks the learned fusion's best note
                    j = teams.index("learned")
                    ev = {"user_id": "u", "note_id": body["items"][j]["note_id"], "type": "click", "ts": 100,
                          "surface": "search", "request_id": rid, "position": j}
                    r = c.post("/v1/events", json={"events": [ev]}, headers=AUTH)
                    assert r.status_code in (200, 202), r.text
                    e.side_effects.drain(5.0)
            assert 12 <= served < 40
            assert body["fusion"] == "learned"
            st = c.get("/v1/search/status", headers=AUTH).json()["fusion"]
            il = st["learned"]["interleaving"]
            assert st["fusion"] == "learned" and st["interleaving"] == 0.0 and "won the interleaving" in st["reason"]
            assert il["verdict"] == "learned" and il["pages"] == 12 and il["learned_wins"] >= 11
    finally:
        e.close()


def test_cli_reports_the_interleaving_and_search_serves_by_it(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from notefeed.cli import app
    from notefeed.data.dataset import Dataset
    from notefeed.data.store import Workspace
    from notefeed.search.cli import _open_index

    ws = tmp_path / "ws"
    ev = pd.DataFrame({"user_id": ["u"], "note_id": ["n0"], "ts": [0], "type": ["like"]})
    with Workspace.open(ws) as w:
        w.save_dataset(Dataset.build("cf", ev, notes=make_notes()))
    r = CliRunner()
    out = r.invoke(app, ["search-interleaving", "--workspace", str(ws)])
    assert out.exit_code == 2 and "fusion.json does not exist" in out.output
    _, pipe = _open_index(ws)
    _uncertified(pipe)
    pipe.close()  # saved with the index
    out = r.invoke(app, ["search-interleaving", "--workspace", str(ws)])
    assert out.exit_code == 2 and "search_log.sqlite does not exist" in out.output
    log = SearchLog(ws / "search_log.sqlite")
    for k in range(12):  # the learned fusion's note clicked on 10 interleaved pages, RRF's on 2
        log.log_query(f"r{k}", "u", "coffee", ["n1", "n2"], ts=10.0 + k, teams=["rrf", "learned"])
        log.log_clicks([(f"r{k}", "n2" if k < 10 else "n1", "u", 10.5 + k, "click", 0)])
    log.close()
    out = r.invoke(app, ["search-interleaving", "--workspace", str(ws), "--pages", "20"])
    assert out.exit_code == 0 and "collecting (12 of 20 searches" in out.output, out.output
    assert "fusion=rrf" in r.invoke(app, ["search", "coffee", "--workspace", str(ws), "--no-sync"]).output
    out = r.invoke(app, ["search-interleaving", "--workspace", str(ws), "--pages", "12",
                         "--json", str(tmp_path / "v.json")])
    assert out.exit_code == 0 and "learned (12 of 12" in out.output, out.output
    v = json.loads((tmp_path / "v.json").read_text())
    assert v["verdict"] == "learned" and v["learned_wins"] == 10 and v["command"].endswith("--pages 12")
    # `notefeed search` shows what serving serves: with the default 1000 pages still collecting, RRF
    assert "fusion=rrf" in r.invoke(app, ["search", "coffee", "--workspace", str(ws), "--no-sync"]).output
    assert "interleaving" not in json.loads((ws / "search" / "fusion.json").read_text())["meta"]  # not saved


def test_the_study_interleaves_each_fusion_it_trains(tmp_path: Path) -> None:
    """`notefeed search-fusion-study --interleave N` on the tiny simulated community: every
    fusion of the learning curve and the graded one are interleaved with RRF on N simulated
    searches; the fusion fitted to grades wins more of them than RRF."""
    from typer.testing import CliRunner

    from notefeed.cli import app

    out = CliRunner().invoke(app, ["search-fusion-study", "--dataset", "sim-tiny", "--queries", "300",
                                   "--test-queries", "60", "--interleave", "200", "--json", str(tmp_path / "s.json")])
    assert out.exit_code == 0, out.output
    assert "interleaved with RRF, learned-from-grades+personal: collecting" in out.output  # 1,000 pages needed
    res = json.loads((tmp_path / "s.json").read_text())
    assert res["interleaved_searches"] == 200 and res["command"].endswith("--interleave 200")
    trained = [e for e in res["results"]["learning_curve"] if e["report"]["trained"]]
    assert trained and all(e["interleaving"]["searches"] == 200 for e in trained)
    for il in [e["interleaving"] for e in trained] + [res["results"]["learned-from-grades+personal"]["interleaving"]]:
        v, every = il["verdict"], il["all_searches"]
        assert v["verdict"] == "collecting" and v["pages"] == every["pages"] <= 200
        assert every["learned_wins"] + every["rrf_wins"] + every["ties"] == every["pages"]
    graded = res["results"]["learned-from-grades+personal"]["interleaving"]["all_searches"]
    assert graded["learned_wins"] > graded["rrf_wins"]
