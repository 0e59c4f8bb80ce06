"""A/B experiments: assignment, per-arm pipelines, the report (live = from the logs), the
statistics, and the same definition in the simulator (A/A quiet, A/B with a known difference
detected)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from notefeed.schema import Event
from notefeed.serve.abstats import ratio_difference, sample_ratio, welch, wilson
from notefeed.serve.abtest import aa_config, run_ab
from notefeed.serve.app import create_app
from notefeed.serve.config import ConfigError, builtin_config, parse_config
from notefeed.serve.engine import Engine
from notefeed.serve.experiments import arm_pipeline, assign, report_workspace

from .conftest import AUTH, make_config

FRESH_ONLY = {"recall": {"channels": [{"name": "fresh/recent", "quota": 300}]}, "coarse": {"scorer": None},
              "fine": {"scorer": None}, "rerank": {"name": None}, "coldstart": {"enabled": False}}


def _experiment(**kw) -> dict:
    return {"name": "t", "arms": [{"name": "control"}, {"name": "treat", "overlay": {"rerank": {"name": None}}}], **kw}


def test_assignment_is_stable_and_balanced() -> None:
    users = [f"u{i}" for i in range(20_000)]
    arms = np.array([assign(u, "salt", [1, 1]) for u in users])
    assert [assign(u, "salt", [1, 1]) for u in users[:100]] == arms[:100].tolist()  # same every call
    assert assign("u42", "salt", [1, 1]) == 0 and assign("u1", "salt", [1, 1]) == 1  # pinned: stable across versions
    assert sample_ratio(np.bincount(arms), [1, 1])["p"] > 0.001
    skew = np.bincount([assign(u, "salt", [1, 3]) for u in users])
    assert abs(skew[1] / len(users) - 0.75) < 0.02
    other = np.array([assign(u, "other", [1, 1]) for u in users])
    assert 0.45 < (arms == other).mean() < 0.55  # a new salt reshuffles


def test_config_errors_name_the_arm_field(small_ds, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"experiments\.arms\.1\.overlay\.rerank\.windw"):
        parse_config({"experiments": _experiment(arms=[{"name": "a"}, {"name": "b", "overlay": {"rerank": {"windw": 1}}}])})
    with pytest.raises(ConfigError, match=r"experiments\.arms\.1\.overlay.*api"):
        parse_config({"experiments": _experiment(arms=[{"name": "a"}, {"name": "b", "overlay": {"api": {}}}])})
    with pytest.raises(ConfigError, match=r"experiments\.arms"):
        parse_config({"experiments": {"name": "t", "arms": [{"name": "only"}]}})
    with pytest.raises(ConfigError, match=r"experiments\.arms\.0\.name"):
        parse_config({"experiments": {"name": "t", "arms": [{"name": "a b"}, {"name": "c"}]}})
    # a component name is checked when the arm's pipeline is built, at start-up
    cfg = builtin_config().with_overrides(experiments=_experiment(
        arms=[{"name": "a"}, {"name": "b", "overlay": {"rerank": {"name": "no/such"}}}]))
    with pytest.raises(ConfigError, match=r"experiments\.arms\.1\.overlay\.rerank\.name"):
        Engine(small_ds, cfg, tmp_path)


def test_engine_serves_arms_and_reports(small_ds, tmp_path: Path) -> None:
    cfg = make_config(experiments=_experiment())
    ws = tmp_path / "ws"
    eng = Engine(small_ds, cfg, ws)
    try:
        assert {"exp:control", "exp:treat"} <= set(eng.pipelines)
        assert eng.pipelines["exp:control"] is eng.pipelines["default"]  # no overlay: the same pipeline
        assert not any(s.kind == "selector" and "author" in s.name for s in eng.pipelines["exp:treat"].steps)
        users = small_ds.users["user_id"].astype(str).tolist()[:60]
        with TestClient(create_app(eng)) as c:
            for u in users:
                body = c.get("/v1/feed", params={"user_id": u, "n": 10, "explain": u == users[0]}).json()
                arm = eng.experiment.arm_of(u).name
                assert body["experiment"] == {"name": "t", "arm": arm}
                if u == users[0]:  # the trace names the arm's pipeline, which ran
                    assert body["trace"]["pipeline"] == f"exp:{arm}"
                first = body["items"][0]["note_id"]
                c.post("/v1/events", headers=AUTH, json={"events": [
                    {"user_id": u, "note_id": first, "ts": 1, "type": "click", "dwell_s": 12.0}]})
            eng.side_effects.drain()
            rep = c.get("/v1/admin/experiments").json()
        assert rep["active"] and [a["name"] for a in rep["arms"]] == ["control", "treat"]
        assert sum(a["users"] for a in rep["arms"]) == 60 and sum(a["pages"] for a in rep["arms"]) == 60
        for a in rep["arms"]:
            m = a["metrics"]["ctr"]
            assert m["k"] == a["users"] and m["lo"] <= m["value"] <= m["hi"]
        assert set(rep["differences"][0]["metrics"]) >= {"ctr", "like_rate", "collect_rate", "dwell_s",
                                                         "small_creator_share", "latency_ms"}
        assert rep["sample_ratio"]["p"] is not None
        # an explicit pipeline is not counted (the console's probes)
        eng.feed(users[0], 10, arm_pipeline("treat"))
        assert eng.experiment.report()["arms"][0]["pages"] + eng.experiment.report()["arms"][1]["pages"] == 60
    finally:
        eng.close()
    # `notefeed experiments report`: the same numbers from the page log and the event log
    again = report_workspace(ws)[0]
    for a, b in zip(rep["arms"], again["arms"], strict=True):
        assert (a["users"], a["impressions"]) == (b["users"], b["impressions"])
        assert a["metrics"]["ctr"] == b["metrics"]["ctr"]
    # a restart rebuilds the live tallies from the logs
    eng = Engine(small_ds, cfg, ws)
    try:
        assert eng.experiment.report()["arms"][0]["metrics"]["ctr"] == rep["arms"][0]["metrics"]["ctr"]
    finally:
        eng.close()


def test_every_workers_live_report_counts_every_workers_pages_and_events(small_ds, tmp_path: Path,
                                                                          redis_url: str, redis_client) -> None:
    """Two serving processes on one workspace and Redis stream (`serve --workers 2`): pages
    served by A, clicks posted to B; both live reports count all of them, as the report from the
    logs does. Before, each worker's live report counted its own pages and events only."""
    import time

    cfg = make_config(experiments=_experiment(), online={"backend": "redis", "redis_url": redis_url,
                                                         "redis_prefix": "abw"})
    ws = tmp_path / "ws"
    a, b = Engine(small_ds, cfg, ws), Engine(small_ds, cfg, ws)
    try:
        users = small_ds.users["user_id"].astype(str).tolist()[:20]
        for u in users:
            _, res = a.feed(u, 10)
            a.side_effects.drain()  # the page logged (milliseconds), before its reader can click
            b.ingest([Event(user_id=u, note_id=a.catalog.note_ids[int(res.items[0])], ts=1, type="click")])
        a.side_effects.drain()
        b.side_effects.drain()

        def counted(e: Engine) -> tuple[int, int]:
            rep = e.experiment.report()
            return sum(x["pages"] for x in rep["arms"]), sum(x["metrics"]["ctr"]["k"] for x in rep["arms"])

        t0 = time.monotonic()
        while (counted(a), counted(b)) != ((20, 20), (20, 20)):
            assert time.monotonic() - t0 < 10, (counted(a), counted(b))
            time.sleep(0.05)
    finally:
        a.close()
        b.close()
    again = report_workspace(ws, cfg)[0]
    assert sum(x["pages"] for x in again["arms"]) == 20 and sum(x["metrics"]["ctr"]["k"] for x in again["arms"]) == 20


def test_events_before_the_first_page_and_other_surfaces_do_not_count(small_ds, tmp_path: Path) -> None:
    eng = Engine(small_ds, make_config(experiments=_experiment()), tmp_path / "ws")
    try:
        note = eng.catalog.note_ids[0]
        eng.ingest([Event(user_id="fresh-user", note_id=note, ts=1, type="click")])  # before any page
        eng.feed("fresh-user", 10)
        eng.ingest([Event(user_id="fresh-user", note_id=note, ts=2, type="click", surface="search")])
        eng.side_effects.drain()
        rep = eng.experiment.report()
        assert sum(a["metrics"]["ctr"]["k"] for a in rep["arms"]) == 0
        assert sum(a["impressions"] for a in rep["arms"]) == 10
    finally:
        eng.close()


def test_statistics() -> None:
    w = wilson(50, 100)
    assert w["value"] == 0.5 and w["lo"] == pytest.approx(0.4038, abs=1e-3) and w["hi"] == pytest.approx(0.5962, abs=1e-3)
    assert wilson(0, 0)["value"] is None
    rng = np.random.default_rng(0)
    n_a, n_b = rng.integers(5, 15, 400), rng.integers(5, 15, 400)
    same = ratio_difference(rng.binomial(n_a, 0.1), n_a, rng.binomial(n_b, 0.1), n_b)
    diff = ratio_difference(rng.binomial(n_a, 0.1), n_a, rng.binomial(n_b, 0.2), n_b)
    assert not same["significant"] and diff["significant"] and diff["lo"] > 0
    # the delta-method interval covers the true difference ~95% of the time, users clustered
    # (each user's own CTR varies, so an impression-level interval would be too narrow)
    hits = 0
    for _ in range(300):
        pa, pb = rng.beta(2, 18, 300), rng.beta(3, 17, 300)  # per-user CTRs, means 0.10 and 0.15
        na, nb = rng.integers(1, 30, 300), rng.integers(1, 30, 300)
        d = ratio_difference(rng.binomial(na, pa), na, rng.binomial(nb, pb), nb)
        hits += d["lo"] <= 0.05 <= d["hi"]
    assert 0.91 <= hits / 300 <= 0.985
    assert welch(rng.normal(0, 1, 300), rng.normal(0.5, 1, 300))["significant"]
    assert sample_ratio([1000, 1000], [1, 1])["mismatch"] is False
    assert sample_ratio([1000, 1200], [1, 1])["mismatch"] is True


@pytest.mark.slow
def test_aa_in_the_simulator_finds_no_difference() -> None:
    """A smaller version of docs/results/experiments/aa.json (20 runs, 5 steps x 100)."""
    out = run_ab(aa_config(builtin_config()), "tiny", seeds=range(8), steps=3, requests_per_step=80, train=False)
    assert out["significant_share"]["A2"] <= 1 / 8
    assert out["srm_mismatch_share"] == 0
    for r in out["runs"]:
        arms = r["report"]["arms"]
        assert all(a["users"] > 0 and a["impressions"] > 0 for a in arms)


@pytest.mark.slow
def test_ab_in_the_simulator_detects_a_known_difference() -> None:
    cfg = builtin_config().with_overrides(experiments={
        "name": "fresh-only", "arms": [{"name": "funnel"}, {"name": "fresh", "overlay": FRESH_ONLY}]})
    out = run_ab(cfg, "tiny", seeds=[0, 1], steps=4, requests_per_step=100, train=False)
    assert out["significant_share"]["fresh"] == 1.0
    for r in out["runs"]:
        d = r["report"]["differences"][0]["metrics"]["ctr"]
        assert d["diff"] < 0 and d["hi"] < 0
