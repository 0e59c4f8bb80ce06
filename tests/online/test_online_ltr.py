"""The online trainer of the ``rank/ltr`` fine ranker: logged pages + later engagement ->
listwise groups -> an updated copy published; and the same inside a serving engine."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from notefeed.online.ltr import OnlineLTR, OnlineLTRConfig
from notefeed.rank.ltr import Group, ListwiseRanker

F = 4  # features; the base ranker learned feature 0, the online stream rewards feature 1


def _groups(rng: np.random.Generator, n: int, signal: int, m: int = 10) -> list[Group]:
    out = []
    for t in range(n):
        x = rng.normal(size=(m, F)).astype(np.float32)
        out.append(Group(x, int(np.argmax(x[:, signal])), float(t)))
    return out


def _hr1(model: ListwiseRanker, groups: list[Group]) -> float:
    return float(np.mean([np.argmax(model.predict(g.x)) == g.pos for g in groups]))


@pytest.fixture(scope="module")
def base() -> ListwiseRanker:
    rng = np.random.default_rng(0)
    return ListwiseRanker([f"f{j}" for j in range(F)], epochs=15, threads=1).fit(_groups(rng, 400, 0), progress=False)


def _trainer(model: ListwiseRanker, published: list, **cfg) -> OnlineLTR:
    served = {"m": ("v1", model)}

    def publish(m, meta):
        published.append((m, meta))
        served["m"] = (m.version, m)

    return OnlineLTR(OnlineLTRConfig(background=False, **cfg), lambda: served["m"], publish,
                     lambda nid: int(nid[1:]) if nid.startswith("n") else None)


def _serve_and_click(tr: OnlineLTR, rng: np.random.Generator, pages: int, signal: int, t0: float = 1000.0) -> None:
    """Each request: 30 candidates logged, the top 10 (by index order) shown, the user clicks
    the shown note with the largest feature ``signal``."""
    for p in range(pages):
        user, ts = f"u{p % 7}", t0 + p
        items = rng.choice(10_000, 30, replace=False)
        x = rng.normal(size=(30, F)).astype(np.float32)
        tr.log_request(user, ts, items, x)
        tr.log_page(user, items[:10])
        best = items[int(np.argmax(x[:10, signal]))]
        tr.observe([SimpleNamespace(type="click", user_id=user, note_id=f"n{best}", ts=ts + 5)])


def test_engagement_on_served_pages_retrains_a_copy_that_follows_the_drift(base):
    rng = np.random.default_rng(1)
    test = _groups(rng, 300, 1)
    before = _hr1(base, test)
    published: list = []
    tr = _trainer(base, published, min_groups=50, passes=3, lr=3e-3)
    _serve_and_click(tr, rng, 600, signal=1)
    assert tr.updates == len(published) == 12 and tr.groups == 600
    model, meta = published[-1]
    assert model.version == "v1+online.12" and meta["groups"] == 50
    after = _hr1(model, test)
    assert after > 0.8 and after > before + 0.3, (before, after)
    assert _hr1(base, test) == before  # the served model was never trained in place
    assert tr.stats()["version"] == "v1+online.12"


def test_only_shown_notes_within_the_window_make_groups(base):
    published: list = []
    tr = _trainer(base, published, min_groups=1000, window_s=60.0)
    items = np.arange(30)
    tr.log_request("u", 100.0, items, np.zeros((30, F), np.float32))
    tr.log_page("u", items[:10])
    ev = lambda nid, ts, typ="click": SimpleNamespace(type=typ, user_id="u", note_id=nid, ts=ts)  # noqa: E731
    assert tr.observe([ev("n25", 110)]) == 0            # recalled but not shown
    assert tr.observe([ev("n3", 500)]) == 0             # shown, but long after the page
    assert tr.observe([ev("n3", 110, "hide")]) == 0     # not an engagement
    assert tr.observe([ev("n3", 110), ev("n3", 111, "like")]) == 1  # one choice, counted once
    assert tr.observe([SimpleNamespace(type="click", user_id="other", note_id="n4", ts=110)]) == 0
    assert tr.groups == 1 and not published
    # a page without its request (a probe, another pipeline) is not logged
    tr.log_page("nobody", items[:10])
    assert tr.pages_logged == 1


def test_bad_params_name_the_field():
    with pytest.raises(ValueError, match="online.train_params.min_groups"):
        OnlineLTRConfig(min_groups=0)


def test_serving_engine_trains_beside_serving_and_hot_swaps(tmp_path: Path):
    """A trained engine with ``online.train``: pages served, clicks ingested -> a new fine
    version in the same process, within seconds (the figure the issue asks < 60 s)."""
    from notefeed.models.train import train_components
    from notefeed.schema import Event
    from notefeed.serve.config import ServeConfig
    from notefeed.serve.engine import Engine
    from notefeed.serve.synth import synthetic_community

    ds = synthetic_community(1500, n_users=150, n_events=5000, seed=4)
    cfg = ServeConfig().with_overrides(
        recall={"channels": [{"name": "item-to-item/swing", "quota": 100},
                             {"name": "non-personalized/popular", "quota": 50}]},
        coarse={"scorer": "rank/ltr", "keep": 60, "params": {"epochs": 4, "threads": 1}},
        fine={"scorer": "rank/ltr", "params": {"epochs": 4, "threads": 1}},
        coldstart={"enabled": False},
        online={"train": True, "train_params": {"min_groups": 20, "max_wait_s": 1.0, "poll_s": 0.1}})
    fitted, _ = train_components(cfg, ds, progress=False)
    eng = Engine(ds, cfg, tmp_path / "ws", fitted=fitted)
    try:
        v0 = eng.models.current().version
        ids = ds.users["user_id"].astype(str).to_numpy()
        t_click = None
        for u in ids[:40]:
            _, res = eng.feed(str(u), 10)
            note = eng.catalog.note_ids[int(res.items[3])]
            eng.ingest([Event(user_id=str(u), note_id=note, ts=int(eng.clock()), type="click")])
            t_click = t_click or time.time()
        deadline = time.time() + 30
        while (eng.online_ltr.updates == 0 or eng.online_ltr.groups < 40) and time.time() < deadline:
            time.sleep(0.05)
        st = eng.online_ltr.stats()
        assert st["pages_logged"] == 40 and st["groups"] == 40 and st["updates"] >= 1, st
        assert eng.models.current().version == f"{v0}+online.{st['updates']}"
        assert st["last_update"]["event_to_model_s_max"] < 30
        _, res = eng.feed(str(ids[0]), 10)  # served by the new version
        assert len(res.items) == 10 and not res.errors
        # probes (offline evaluation) are never logged
        eng.feed(str(ids[1]), 10, probe=True)
        assert eng.online_ltr.stats()["pages_logged"] == 41
    finally:
        eng.close()
