"""The streaming online trainer: label join, updates, unseen ids, versions, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from notefeed.data.dataset import Dataset
from notefeed.online.dyn_embedding import grow_fine_net
from notefeed.online.events import EventRecord
from notefeed.online.trainer import OnlineTrainConfig, OnlineTrainer, normalise_events
from notefeed.rank.features import FeatureBuilder
from notefeed.rank.finenet import FineConfig
from notefeed.rank.multitask import FineRanker

T0 = 1_000_000
WAIT = 600


def _dataset(n_users: int = 12, n_notes: int = 20, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    notes = pd.DataFrame({"note_id": [f"n{i}" for i in range(n_notes)],
                          "author_id": [f"c{i % 4}" for i in range(n_notes)],
                          "category": [f"cat{i % 3}" for i in range(n_notes)],
                          "tags": [[f"t{i % 5}"] for i in range(n_notes)], "created_at": T0 - 86_400})
    rows = []
    for k in range(200):
        u, i, t = int(rng.integers(n_users)), int(rng.integers(n_notes)), T0 - 10_000 + 40 * k
        rows.append((f"u{u}", f"n{i}", t, "impression"))
        if rng.random() < 0.2:
            rows.append((f"u{u}", f"n{i}", t + 5, "click"))
    ev = pd.DataFrame(rows, columns=["user_id", "note_id", "ts", "type"])
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(n_users)]})
    return Dataset.build("toy", ev, notes=notes, users=users)


def _ranker(ds: Dataset) -> FineRanker:
    torch.manual_seed(0)
    r = FineRanker(FineConfig(dim=8, expert_dim=16, tower_hidden=8, lr=1e-2, sparse_lr=5e-2))
    r.build(FeatureBuilder(ds))
    r.net.eval()  # type: ignore[union-attr]
    return r


def _trainer(ds: Dataset, **kw: object) -> OnlineTrainer:
    cfg = OnlineTrainConfig(wait_s=WAIT, interval_s=10**9, min_samples=10**9, batch_size=64, **kw)  # type: ignore[arg-type]
    return OnlineTrainer(ds, _ranker(ds), cfg)


def _ev(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "note_id", "ts", "type"])


def test_label_join_window_late_and_negatives() -> None:
    tr = _trainer(_dataset())
    tr.ingest(_ev([("u0", "n0", T0, "impression"), ("u1", "n1", T0, "impression"),
                   ("u2", "n2", T0, "impression"), ("u0", "n0", T0 + 100, "click"),
                   ("u0", "n0", T0 + 120, "like")]))
    assert tr.n_pending == 3 and len(tr.ready_samples()) == 0  # nothing ready inside the wait
    # the clock passes T0 + WAIT: the three impressions mature
    tr.ingest(_ev([("u3", "n3", T0 + WAIT, "impression")]))
    ready = tr.ready_samples().set_index(["user", "item"])
    assert len(ready) == 3
    assert ready.loc[(0, 0), "click"] == 1.0 and ready.loc[(0, 0), "like"] == 1.0
    assert ready.loc[(1, 1), "click"] == 0.0 and ready.loc[(2, 2), "click"] == 0.0  # negatives after the wait
    assert tr.counters["labels_joined"] == 2
    # a click on (u1, n1) after its window closed is dropped and counted
    tr.ingest(_ev([("u1", "n1", T0 + WAIT + 5, "click")]))
    assert tr.counters["labels_late"] == 1
    assert tr.ready_samples().set_index(["user", "item"]).loc[(1, 1), "click"] == 0.0
    # a click with no impression of the pair at all is an orphan
    tr.ingest(_ev([("u5", "n7", T0 + WAIT + 6, "click")]))
    assert tr.counters["labels_orphan"] == 1


def test_label_at_window_edge_is_excluded() -> None:
    tr = _trainer(_dataset())
    tr.ingest(_ev([("u0", "n0", T0, "impression"), ("u0", "n0", T0 + WAIT - 1, "click")]))
    tr.ingest(_ev([("u1", "n1", T0 + 5, "impression"), ("u1", "n1", T0 + 5 + WAIT, "click")]))
    tr.ingest(_ev([("u2", "n2", T0 + 10 * WAIT, "impression")]))
    ready = tr.ready_samples().set_index(["user", "item"])
    assert ready.loc[(0, 0), "click"] == 1.0
    assert ready.loc[(1, 1), "click"] == 0.0  # ts + wait is outside [ts, ts + wait)


def test_update_moves_predictions_toward_observed_clicks() -> None:
    ds = _dataset()
    tr = _trainer(ds, passes=3)
    b = FeatureBuilder(ds)
    users = np.arange(12)
    f_hot = b.features(users, np.full(12, 3), np.full(12, T0))
    f_cold = b.features(users, np.full(12, 4), np.full(12, T0))
    before_hot = tr.ranker.predict(f_hot)["click"].mean()
    before_cold = tr.ranker.predict(f_cold)["click"].mean()
    rows = []
    for k in range(20):  # every user sees n3 and n4; only n3 is ever clicked
        t = T0 + 30 * k
        for u in range(12):
            rows += [(f"u{u}", "n3", t, "impression"), (f"u{u}", "n4", t, "impression"), (f"u{u}", "n3", t + 1, "click")]
    tr.ingest(_ev(rows))
    tr.ingest(_ev([("u0", "n9", T0 + 30 * 20 + WAIT, "impression")]))
    metas = tr.flush()
    assert len(metas) == 1 and metas[0]["samples"] == 480
    after_hot = tr.ranker.predict(f_hot)["click"].mean()
    after_cold = tr.ranker.predict(f_cold)["click"].mean()
    assert after_hot > before_hot + 0.05
    assert after_cold < before_cold
    assert after_hot > after_cold + 0.2


def test_unseen_ids_grow_tables() -> None:
    ds = _dataset()
    tr = _trainer(ds)
    n_u, n_i = tr.ranker.net.user_emb.num_embeddings, tr.ranker.net.item_emb.num_embeddings  # type: ignore[union-attr]
    old_rows = tr.ranker.net.item_emb.weight.detach().clone()  # type: ignore[union-attr]
    notes = pd.DataFrame({"note_id": ["brand-new"], "author_id": ["c-new"], "category": ["cat-new"]})
    tr.ingest(_ev([("stranger", "brand-new", T0, "impression"), ("stranger", "brand-new", T0 + 1, "click")]),
              notes=notes)
    tr.ingest(pd.DataFrame({"user": [40], "item": [25], "ts": [T0 + 2], "type": ["impression"]}))  # indices past the end
    tr.ingest(_ev([("u0", "n0", T0 + 2 * WAIT, "impression")]))
    meta = tr.flush()[0]
    net = tr.ranker.net
    assert net is not None
    assert net.user_emb.num_embeddings == 41 + 1 > n_u and net.item_emb.num_embeddings == 26 + 1 > n_i
    assert meta["n_items"] == 26 and meta["n_users"] == 41 and meta["grown_tables"] >= 2
    assert tr.builder is not None
    new_item = tr.items.index["brand-new"]
    cat_of_new = tr.builder.item_cat[new_item + 1] - 1
    assert tr.cat_names[cat_of_new] == "cat-new"
    # old categories keep their codes when a new one appears
    assert list(tr.builder.item_cat[1:21]) == list(FeatureBuilder(ds).item_cat[1:21])
    p = tr.ranker.predict(tr.builder.features(np.array([tr.users.index["stranger"], 40]),
                                              np.array([new_item, 25]), np.full(2, T0 + 3 * WAIT)))
    assert np.isfinite(p["click"]).all()
    # row-wise updates: the batch touched only the new notes, so the old rows are exactly as they were
    assert torch.equal(net.item_emb.weight[:n_i], old_rows)
    assert not torch.equal(net.item_emb.weight[new_item + 1], torch.zeros(8))
    assert net.item_emb.weight.shape[0] == 27


def test_grow_keeps_rows_and_pads_optimizer_state() -> None:
    ds = _dataset()
    r = _ranker(ds)
    net = r.net
    assert net is not None
    opts = r.optimizers()
    f = FeatureBuilder(ds).features(np.arange(5), np.arange(5), np.full(5, T0))
    from notefeed.rank.multitask import masked_loss, to_tensors

    y = torch.ones(5, len(r.cfg.tasks))
    loss, _ = masked_loss(net(to_tensors(f)), y, r.cfg.tasks, {})
    loss.backward()
    for o in opts:
        o.step()
    before = net.item_emb.weight.detach().clone()
    vocab = dict(r.cfg.vocab, n_items=before.shape[0] + 3)
    grown = grow_fine_net(net, vocab, torch.cat([net.item_cat, torch.zeros(3, dtype=torch.long)]),
                          torch.cat([net.item_author, torch.zeros(3, dtype=torch.long)]),
                          torch.cat([net.item_tags, torch.zeros(3, net.item_tags.shape[1], dtype=torch.long)]), opts)
    assert grown == ["item_emb"]
    assert torch.equal(net.item_emb.weight[: before.shape[0]], before)
    st = next(o for o in opts if net.item_emb.weight in o.state).state[net.item_emb.weight]
    assert st["mv"].shape[0] == before.shape[0] + 3 and float(st["mv"][-3:].abs().sum()) == 0.0
    with pytest.raises(ValueError, match="n_items"):
        grow_fine_net(net, dict(vocab, n_items=2), net.item_cat, net.item_author, net.item_tags)


def test_versions_monotone_with_metadata_and_hot_swap() -> None:
    from notefeed.serve.models import LinearModel, ModelHolder, ModelVersion
    from notefeed.serve.rankwire import BoundedScorer, engine_installer

    class FakeEngine:
        models = ModelHolder(ModelVersion("builtin-default", LinearModel.default(), 0.0))

    ds = _dataset()
    published: list[tuple[FineRanker, dict]] = []
    cfg = OnlineTrainConfig(wait_s=WAIT, interval_s=WAIT, min_samples=10**9, batch_size=64)
    eng = FakeEngine()
    tr = OnlineTrainer(ds, _ranker(ds), cfg, on_publish=lambda r, m: published.append((r, m)),
                       install=engine_installer(eng))
    for k in range(6):
        t = T0 + k * WAIT
        tr.ingest(_ev([(f"u{u}", f"n{(u + k) % 20}", t + u, "impression") for u in range(10)]
                      + [("u1", f"n{(1 + k) % 20}", t + 3, "click")]))
    metas = [m for _, m in published]
    assert len(metas) >= 4
    assert [m["version"] for m in metas] == list(range(1, len(metas) + 1))
    for a, b in zip(metas, metas[1:], strict=False):
        assert b["samples_seen"] > a["samples_seen"] and b["last_event_ts"] > a["last_event_ts"]
        assert b["published_at"] >= a["published_at"]
    for m in metas:
        assert m["update_latency_s"] >= 0 and m["samples"] > 0 and "event_to_publish_s" in m
    cur = eng.models.current()
    assert cur.version == f"online-{metas[-1]['version']}"
    assert isinstance(cur.model, BoundedScorer) and cur.source == "online"
    assert cur.loaded_at == metas[-1]["published_at"]
    scores = cur.model.score(_ctx(1), np.arange(5))
    assert scores["click"].shape == (5,)
    # the published copy is frozen: training on does not change it
    snap, _ = published[-1]
    w = snap.net.item_emb.weight.detach().clone()  # type: ignore[union-attr]
    tr.ingest(_ev([("u1", "n2", T0 + 20 * WAIT, "impression")]))
    tr.flush()
    assert torch.equal(snap.net.item_emb.weight, w)  # type: ignore[union-attr]


def _ctx(user: int):  # type: ignore[no-untyped-def]
    from notefeed.recall.base import UserContext

    return UserContext(user_id=f"u{user}", user=user)


def test_consume_event_bus_with_cursor(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from notefeed.online.bus import SqliteEventBus

    bus = SqliteEventBus(tmp_path / "events.sqlite", synchronous="NORMAL")
    bus.append([EventRecord("u0", "n0", T0, "impression", 1.0), EventRecord("u0", "n0", T0 + 1, "click", 1.0)])
    tr = _trainer(_dataset())
    tr.consume(bus)
    assert tr.bus_cursor == 2 and tr.counters["labels_joined"] == 1
    bus.append([EventRecord("u1", "n1", T0 + WAIT, "impression", 2.0)])
    tr.consume(bus, start=tr.bus_cursor)
    assert tr.bus_cursor == 3 and tr.counters["impressions"] == 2
    assert tr.ready_samples()["click"].tolist() == [1.0]
    bus.close()


@pytest.mark.parametrize(("rows", "field"), [
    ([{"user_id": "u0", "note_id": "n0", "type": "click"}], "ts"),
    ([{"user_id": "u0", "note_id": "n0", "ts": "soon", "type": "click"}], "ts"),
    ([{"user_id": "u0", "note_id": "n0", "ts": -5, "type": "click"}], "ts"),
    ([{"user_id": "u0", "note_id": "n0", "ts": 5, "type": "purchase"}], "type"),
    ([{"note_id": "n0", "ts": 5, "type": "click"}], "user"),
    ([{"user_id": "u0", "ts": 5, "type": "click"}], "item"),
    ([{"user_id": None, "note_id": "n0", "ts": 5, "type": "click"}], "user"),
])
def test_bad_rows_name_the_field(rows: list[dict], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        normalise_events(rows)
    tr = _trainer(_dataset())
    with pytest.raises(ValueError, match=field):
        tr.ingest(rows)


def test_bad_row_types_and_indices() -> None:
    with pytest.raises(ValueError, match="row 1"):
        normalise_events([{"user_id": "u", "note_id": "n", "ts": 1, "type": "click"}, 42])
    tr = _trainer(_dataset())
    with pytest.raises(ValueError, match="field 'user'"):
        tr.ingest(pd.DataFrame({"user": [-1], "item": [0], "ts": [T0], "type": ["click"]}))
    with pytest.raises(ValueError, match="wait_s"):
        OnlineTrainConfig(wait_s=0)
    with pytest.raises(ValueError, match="ranker"):
        OnlineTrainer(_dataset(), FineRanker())


def test_out_of_order_impressions_of_one_pair() -> None:
    tr = _trainer(_dataset())
    tr.ingest(_ev([("u0", "n0", T0 + 100, "impression")]))
    tr.ingest(_ev([("u0", "n0", T0, "impression"), ("u0", "n0", T0 + 50, "click")]))
    tr.ingest(_ev([("u9", "n9", T0 + WAIT + 10, "impression")]))
    first = tr.ready_samples()
    assert first[["ts", "click"]].values.tolist() == [[T0, 1.0]]
    tr.ingest(_ev([("u9", "n9", T0 + WAIT + 100, "impression")]))
    assert tr.ready_samples()[["ts", "click"]].values.tolist() == [[T0, 1.0], [T0 + 100, 0.0]]
