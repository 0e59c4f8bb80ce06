"""The learned fusion trained from a search log (clicks): planted preferences are learned,
serving loads and reports it, too few clicks keep RRF with a message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from notefeed.search import SearchConfig, SearchPipeline
from notefeed.search.clickfusion import click_metrics, history_before, install, train_click_fusion
from notefeed.search.fusion import FEATURES
from notefeed.search.querylog import SearchLog
from tests.search.conftest import AUTH, TOKEN, make_notes

QUERIES = ["coffee", "paris", "mountain trail", "latte", "espresso", "boots", "running shoes", "tokyo", "lipstick",
           "camping", "matcha", "skincare", "river", "home", "travel", "night", "shoes", "review", "guide", "red"]
TM = FEATURES.index("topic_match")


def _page(pipe: SearchPipeline, q: str, fusion: str = "rrf") -> tuple[list[str], np.ndarray]:
    res = pipe.search(q, 10, personalise=False, explain=True, fusion=fusion)
    assert res.trace is not None
    return [pipe.note_ids[i] for i in res.items], np.array([it["topic_match"] for it in res.trace["items"]])


def _planted_log(pipe: SearchPipeline, path: Path, n: int) -> SearchLog:
    """``n`` RRF pages of QUERIES; the click is always the shown note with the highest topic_match
    (a feature the RRF score does not use)."""
    log = SearchLog(path)
    for k in range(n):
        shown, tm = _page(pipe, QUERIES[k % len(QUERIES)])
        j = int(np.argmax(tm))
        log.log_query(f"r{k}", None, QUERIES[k % len(QUERIES)], shown, ts=float(k))
        log.log_clicks([(f"r{k}", shown[j], None, k + 0.5, "click", j)])
    return log


def test_clicks_favouring_a_feature_are_learned(tmp_path: Path) -> None:
    # the naive-Bayes topic likelihoods as they are (topic_refine=0): re-estimating them from 12
    # notes moves the planted feature's values, and the thresholds below were set on these
    pipe = SearchPipeline.build(make_notes(), SearchConfig(dense_dim=8, topic_refine=0), path=tmp_path / "idx")
    log = _planted_log(pipe, tmp_path / "log.sqlite", 400)
    pages = log.pages()
    assert len(pages) == 400 and all(len(p["clicked"]) == 1 for p in pages)
    assert [p["ts"] for p in pages] == sorted(p["ts"] for p in pages)
    rep = train_click_fusion(pipe, pages, min_clicked_pages=50, seed=0)
    assert rep.fusion is not None and rep.beats_rrf, rep.reason
    assert rep.counts["train_pages"] == 320 and rep.counts["valid_pages"] == 80
    assert rep.valid["learned"]["click_mrr"] > rep.valid["rrf"]["click_mrr"] + 0.1
    assert install(pipe, rep)
    pipe.close()
    # the saved fusion, loaded with fusion=auto, ranks by the planted feature
    served = SearchPipeline.load(tmp_path / "idx", SearchConfig(dense_dim=8, fusion="auto"))
    assert served.serving_fusion() == "learned" and served.fusion_status()["learned"]["beats_rrf"] is True
    learned_gap, rrf_gap = [], []  # how far the top note's topic_match is below the page's best
    for q in QUERIES:
        _, tm = _page(served, q, fusion="rrf")
        res = served.search(q, 10, personalise=False, explain=True)
        assert res.fusion == "learned" and res.trace is not None
        learned_gap.append(tm.max() - res.trace["items"][0]["topic_match"])
        rrf_gap.append(tm.max() - tm[0])
    # the planted click (the best topic_match) on top: far more often than RRF puts it there
    learned_top, rrf_top = int((np.array(learned_gap) == 0).sum()), int((np.array(rrf_gap) == 0).sum())
    assert learned_top >= 12 and learned_top >= rrf_top + 5, (learned_top, rrf_top)
    served.close()


def test_too_few_clicks_keep_rrf_with_a_message(tmp_path: Path) -> None:
    pipe = SearchPipeline.build(make_notes(), SearchConfig(dense_dim=8))
    log = _planted_log(pipe, tmp_path / "log.sqlite", 30)
    log.log_query("noclick", None, "coffee", ["n0"], ts=99.0)
    rep = train_click_fusion(pipe, log.pages(), min_clicked_pages=200)
    assert rep.fusion is None and not install(pipe, rep) and pipe.fusion is None
    assert "30 searches with a click" in rep.reason and "at least 200" in rep.reason and "RRF" in rep.reason
    assert pipe.serving_fusion() == "rrf"


def test_auto_without_a_winning_fusion_serves_rrf(tmp_path: Path) -> None:
    # no interleaving here (tests/search/test_interleave.py): every search is served by one fusion
    pipe = SearchPipeline.build(make_notes(), SearchConfig(dense_dim=8, fusion="auto", interleave_share=0.0))
    st = pipe.fusion_status()
    assert st["fusion"] == "rrf" and "train-fusion" in st["reason"]
    log = _planted_log(pipe, tmp_path / "log.sqlite", 200)
    rep = train_click_fusion(pipe, log.pages(), min_clicked_pages=50)
    assert rep.fusion is not None
    rep.fusion.meta["beats_rrf"] = False  # as if it had lost on validation
    install(pipe, rep)
    assert pipe.serving_fusion() == "rrf" and "did not beat" in pipe.fusion_status()["reason"]
    assert pipe.search("coffee", 3).fusion == "rrf"
    assert pipe.search("coffee", 3, fusion="learned").fusion == "learned"


def test_click_metrics_and_history_before() -> None:
    m = click_metrics([np.array([0.1, 0.9, 0.5]), np.array([3.0, 2.0, 1.0])],
                      [np.array([True, False, False]), np.array([True, False, True])])
    assert m["click_mrr"] == pytest.approx((1 / 3 + 1) / 2)
    ndcg2 = (1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
    assert m["click_ndcg@10"] == pytest.approx((0.5 + ndcg2) / 2)
    ev = pd.DataFrame({"user": [0, 0, 0, 1], "item": [5, 6, 7, 8], "ts": [10, 20, 30, 5]})
    h = history_before(ev, {"a": 0, "b": 1})
    assert h({"user_id": "a", "ts": 25}).tolist() == [5, 6]
    assert h({"user_id": "a", "ts": 20}).tolist() == [5]  # strictly before the page
    assert h({"user_id": "b", "ts": 1}).tolist() == [] and h({"user_id": None, "ts": 1}) is None
    assert h({"user_id": "zz", "ts": 1}) is None


def test_serving_loads_and_reports_the_trained_fusion(tmp_path: Path) -> None:
    from notefeed.data.dataset import Dataset
    from notefeed.serve.app import create_app
    from notefeed.serve.config import builtin_config
    from notefeed.serve.engine import Engine, popular_config
    from notefeed.serve.search import SearchService

    trainer = SearchPipeline.build(make_notes(), SearchConfig(dense_dim=8))
    log = _planted_log(trainer, tmp_path / "log.sqlite", 200)
    rep = train_click_fusion(trainer, log.pages(), min_clicked_pages=50)
    assert rep.fusion is not None and rep.beats_rrf
    ws = tmp_path / "ws"
    (ws / "search").mkdir(parents=True)
    rep.fusion.save(ws / "search" / "fusion.json")  # the index itself is not built yet: serving builds it
    ev = pd.DataFrame({"user_id": ["u"], "note_id": ["n0"], "ts": [0], "type": ["like"]})
    e = Engine(Dataset.build("cf", ev, notes=make_notes()),
               popular_config(builtin_config().with_overrides(api={"token": TOKEN})), ws)
    e.search = SearchService(e, SearchConfig(dense_dim=8, fusion="auto"))  # type: ignore[attr-defined]
    try:
        with TestClient(create_app(e)) as c:
            r = c.get("/v1/search", params={"q": "coffee"}, headers=AUTH)
            assert r.status_code == 200 and r.json()["fusion"] == "learned", r.text
            st = c.get("/v1/search/status", headers=AUTH).json()
            assert st["ready"] and st["fusion"]["fusion"] == "learned" and st["fusion"]["configured"] == "auto"
            assert st["fusion"]["learned"]["counts"]["valid_pages"] == rep.counts["valid_pages"]
            assert st["log"]["searches"] >= 0
            h = c.get("/healthz").json()["search"]  # the health check says which fusion serves
            assert h == {"ready": True, "error": None, "fusion": "learned"}
        assert (ws / "search" / "catalog.json").exists() and (ws / "search" / "fusion.json").exists()
    finally:
        e.search.close()
        e.close()
    # the default config serves RRF with the same file present, and says so
    e = Engine(Dataset.build("cf", ev, notes=make_notes()),
               popular_config(builtin_config().with_overrides(api={"token": TOKEN})), ws)
    try:
        with TestClient(create_app(e)) as c:
            r = c.get("/v1/search", params={"q": "coffee"}, headers=AUTH)
            want = SearchConfig().fusion
            assert r.json()["fusion"] == ("learned" if want in ("learned", "auto") else "rrf")
            st = c.get("/v1/search/status", headers=AUTH).json()
            assert st["fusion"]["learned"]["source"] == "search log"
            if want == "rrf":
                assert st["fusion"]["fusion"] == "rrf" and "rrf is configured" in st["fusion"]["reason"]
            assert c.get("/healthz").json()["search"]["fusion"] == st["fusion"]["fusion"]
    finally:
        e.search.close()
        e.close()


def test_a_running_server_serves_a_fusion_trained_after_it_started(tmp_path: Path, monkeypatch) -> None:
    """`notefeed search-train-fusion` writes fusion.json into the shared index while a server
    runs: the server serves it from its next look (before, from its next start only)."""
    import notefeed.serve.search as S
    from notefeed.data.dataset import Dataset
    from notefeed.serve.app import create_app
    from notefeed.serve.config import builtin_config
    from notefeed.serve.engine import Engine, popular_config

    monkeypatch.setattr(S, "FUSION_CHECK_S", 0.0)
    trainer = SearchPipeline.build(make_notes(), SearchConfig(dense_dim=8))
    rep = train_click_fusion(trainer, _planted_log(trainer, tmp_path / "log.sqlite", 200).pages(), min_clicked_pages=50)
    assert rep.fusion is not None and rep.beats_rrf
    ev = pd.DataFrame({"user_id": ["u"], "note_id": ["n0"], "ts": [0], "type": ["like"]})
    e = Engine(Dataset.build("cf", ev, notes=make_notes()),
               popular_config(builtin_config().with_overrides(api={"token": TOKEN})), tmp_path / "ws")
    e.search = S.SearchService(e, SearchConfig(dense_dim=8, fusion="auto"))  # type: ignore[attr-defined]
    try:
        with TestClient(create_app(e)) as c:
            assert c.get("/v1/search", params={"q": "coffee"}).json()["fusion"] == "rrf"  # none trained yet
            (tmp_path / "ws" / "search" / "fusion.json").write_text("{not json")  # torn: logged, RRF stays
            assert c.get("/v1/search", params={"q": "coffee"}).json()["fusion"] == "rrf"
            rep.fusion.save(tmp_path / "ws" / "search" / "fusion.json")
            assert c.get("/v1/search", params={"q": "coffee"}).json()["fusion"] == "learned"
    finally:
        e.close()


def test_simulated_clicks_follow_the_search_simulator() -> None:
    from notefeed.search.clickstudy import POSITION_ETA, simulate_clicks
    from notefeed.sim.config import BehaviourParams

    assert POSITION_ETA == BehaviourParams().position_eta  # the feed simulator's position bias
    u = np.zeros((4, 3)) + 0.5
    # examined everywhere ((1 + p) ** -eta > 0.5 for p < 4), grade 3 clicked (R = 7/8) and satisfying: stop
    assert simulate_clicks(np.array([0, 3, 3, 3]), u).tolist() == [False, True, False, False]
    assert simulate_clicks(np.array([0, 0, 0, 0]), u).tolist() == [False] * 4
    # not examined: no click whatever the grade
    assert not simulate_clicks(np.array([3, 3]), np.ones((2, 3)) * 0.999).any()
    rng = np.random.default_rng(0)
    top = np.mean([simulate_clicks(np.array([2, 2]), rng.random((2, 3)))[0] for _ in range(4000)])
    assert abs(top - 3 / 8) < 0.03  # position 0 always examined, R(2) = 3/8


def test_cli_train_fusion(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from notefeed.cli import app
    from notefeed.data.dataset import Dataset
    from notefeed.data.store import Workspace

    ws = tmp_path / "ws"
    ev = pd.DataFrame({"user_id": ["u", "u"], "note_id": ["n0", "n3"], "ts": [0, 1], "type": ["like", "like"]})
    with Workspace.open(ws) as w:
        w.save_dataset(Dataset.build("cf", ev, notes=make_notes()))
    r = CliRunner()
    out = r.invoke(app, ["search-train-fusion", "--workspace", str(ws)])
    assert out.exit_code == 2 and "search_log.sqlite" in out.output and "RRF" in out.output
    # a log from serving's own ranking, but with the planted clicks, and the index the command builds
    from notefeed.search.cli import _open_index

    _, pipe = _open_index(ws)
    _planted_log(pipe, ws / "search_log.sqlite", 40).close()
    pipe.close()
    out = r.invoke(app, ["search-train-fusion", "--workspace", str(ws), "--min-clicks", "100"])
    assert out.exit_code == 1 and "40 searches with a click" in out.output and "stays on RRF" in out.output
    assert not (ws / "search" / "fusion.json").exists()
    out = r.invoke(app, ["search-train-fusion", "--workspace", str(ws), "--min-clicks", "30",
                         "--json", str(tmp_path / "rep.json")])
    assert out.exit_code == 0, out.output
    assert "fusion.json saved" in out.output and (ws / "search" / "fusion.json").exists()
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["trained"] and rep["counts"]["valid_pages"] == 8 and rep["command"].startswith("notefeed search-train")
    loaded = SearchPipeline.load(ws / "search", SearchConfig(fusion="learned"))
    assert loaded.fusion is not None and loaded.fusion.meta["source"] == "search log"
    assert loaded.search("coffee", 3).fusion == "learned"
    loaded.close()
    out = r.invoke(app, ["search", "coffee", "--workspace", str(ws), "--rebuild"])
    assert out.exit_code == 0 and (ws / "search" / "fusion.json").exists()  # kept across the rebuild


def test_train_fits_the_search_fusion_when_it_is_due(tmp_path: Path) -> None:
    """`notefeed train` also fits the search fusion: when the log has enough clicked searches and
    there is none yet, or the last one lost its interleaving and the log has doubled since; not
    while its interleaving counts, nor once it won."""
    import json

    from typer.testing import CliRunner

    from notefeed.cli import app
    from notefeed.data.dataset import Dataset
    from notefeed.data.store import Workspace
    from notefeed.search.cli import _open_index, fusion_due
    from notefeed.serve.config import builtin_config
    from notefeed.serve.engine import popular_config

    ws = tmp_path / "ws"
    ev = pd.DataFrame({"user_id": ["u", "u"], "note_id": ["n0", "n3"], "ts": [0, 1], "type": ["like", "like"]})
    with Workspace.open(ws) as w:
        w.save_dataset(Dataset.build("cf", ev, notes=make_notes()))
    assert fusion_due(ws) is None  # no search log
    _, pipe = _open_index(ws)
    _planted_log(pipe, ws / "search_log.sqlite", 200).close()
    pipe.close()
    assert fusion_due(ws, min_clicks=201) is None
    assert "no fusion.json yet" in str(fusion_due(ws))
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(popular_config(builtin_config()).model_dump(mode="json")))
    r = CliRunner()
    out = r.invoke(app, ["train", "--workspace", str(ws), "--config", str(cfg), "--no-sync", "--no-search-fusion"])
    assert out.exit_code == 0, out.output
    assert "search fusion" not in out.output and not (ws / "search" / "fusion.json").exists()
    out = r.invoke(app, ["train", "--workspace", str(ws), "--config", str(cfg), "--no-sync"])
    assert out.exit_code == 0, out.output
    assert "search fusion: training (200 searches with a click" in out.output
    assert "search fusion: fusion.json saved" in out.output and (ws / "search" / "fusion.json").exists()
    fusion = json.loads((ws / "search" / "fusion.json").read_text())
    assert fusion["meta"]["counts"]["clicked_pages"] == 200
    assert fusion_due(ws) is None  # the log has not grown
    trained_at = fusion["meta"]["trained_at"]
    log = SearchLog(ws / "search_log.sqlite")
    for k in range(1000):  # interleaved pages since: RRF's note clicked on 600, the learned one's on 400
        log.log_query(f"i{k}", "u", "coffee", ["n1", "n2"], ts=trained_at + 1 + k, teams=["rrf", "learned"])
        log.log_clicks([(f"i{k}", "n1" if k < 600 else "n2", "u", trained_at + 1.5 + k, "click", 0)])
    log.close()
    assert "did not win its interleaving (rrf)" in str(fusion_due(ws))  # 1,200 clicked searches: doubled
    out = r.invoke(app, ["train", "--workspace", str(ws), "--config", str(cfg), "--no-sync"])
    assert "search fusion: fusion.json saved" in out.output, out.output
    assert json.loads((ws / "search" / "fusion.json").read_text())["meta"]["counts"]["clicked_pages"] == 1200
    (ws / "search" / "fusion.json").write_text("{torn")
    assert "cannot be read" in str(fusion_due(ws))
    # a fusion that won its interleaving is kept, however the log grows
    db = SearchLog(ws / "search_log.sqlite")
    db.db.execute("UPDATE queries SET teams = '[\"learned\", \"rrf\"]' WHERE teams IS NOT NULL")
    db.close()
    rep_meta = {"source": "search log", "counts": {"clicked_pages": 300}, "trained_at": 0.0}
    from notefeed.search.fusion import LearnedFusion

    LearnedFusion(model="linear", meta=rep_meta).save(ws / "search" / "fusion.json")
    assert fusion_due(ws) is None
