"""Offline = online features: a log replayed through the serving path (``Engine.ingest``)
gives the learned ranker the same features as an engine built on the whole log and warmed
from it (``Engine.warm_state``), which is what training capture and feed evaluation use.

What cannot be equal, by construction: ``user.log_hist`` and ``base.cat_seq`` once a user
has had more than ``online.seq_len`` positives since the serving engine's warm window began.
The online short sequence is bounded (the last ``seq_len`` positives), the dataset history is
not; the dataset engine reads the whole history. ``test_bounded_short_sequence_is_the_only_gap``
pins that this is the only difference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from notefeed.data.dataset import Dataset
from notefeed.recall.base import Candidates
from notefeed.schema import Event
from notefeed.serve.config import builtin_config
from notefeed.serve.engine import Engine, popular_config
from notefeed.serve.learned import candidate_features
from notefeed.serve.pipeline import _merge
from notefeed.serve.synth import synthetic_community

SPAN_S = 3 * 3600  # the whole log: three hours, so the online windows hold real events


@pytest.fixture(scope="module")
def dense_log() -> Dataset:
    """A synthetic community whose 30 days of events are squeezed into three hours."""
    ds = synthetic_community(600, n_users=60, n_events=2400, seed=7)
    ev = ds.events
    t0 = int(ev["ts"].min())
    raw = pd.DataFrame({
        "user_id": ds.users["user_id"].astype(str).to_numpy()[ev["user"].to_numpy()],
        "note_id": ds.notes["note_id"].astype(str).to_numpy()[ev["item"].to_numpy()],
        "ts": t0 + (ev["ts"].to_numpy() - t0) * SPAN_S // (30 * 86400),
        "type": ev["type"].astype(str).to_numpy(),
    })
    return Dataset.build("dense", raw, notes=ds.notes, users=ds.users, creators=ds.creators)


def _config(seq_len: int = 50):
    return popular_config(builtin_config()).with_overrides(online={"synchronous": "NORMAL", "seq_len": seq_len})


def _engines(ds: Dataset, tmp: Path, seq_len: int = 50) -> tuple[Engine, Engine, float]:
    """(A: a prefix served live, the rest ingested; B: the whole log, warmed; final time)."""
    ts = ds.events["ts"].to_numpy()
    t_cut = float(ts.max()) - 5400.0  # the last 90 minutes arrive online
    t_end = float(ts.max()) + 1.0
    a = Engine(ds.with_events(ds.events[ts <= t_cut], "prefix"), _config(seq_len), tmp / "a")
    a.clock = lambda: t_cut
    a.warm_state(t_cut)  # A too was started on a dataset: its own last hour
    later = ds.events[ts > t_cut]
    users = ds.users["user_id"].astype(str).to_numpy()
    notes = ds.notes["note_id"].astype(str).to_numpy()
    for u, i, t, typ in zip(later["user"].tolist(), later["item"].tolist(), later["ts"].tolist(),
                            later["type"].astype(str).tolist(), strict=True):
        a.clock = lambda t=t: float(t)  # the server receives each event at its time
        n, rejected = a.ingest([Event(user_id=str(users[u]), note_id=str(notes[i]), ts=int(t), type=typ)])
        assert n == 1 and not rejected
    a.clock = lambda: t_end
    b = Engine(ds, _config(seq_len), tmp / "b")
    b.clock = lambda: t_end
    assert b.warm_state(t_end) > 0
    return a, b, t_end


def _candidates(ds: Dataset, seed: int):
    rng = np.random.default_rng(seed)
    pop = np.argsort(-np.bincount(ds.events["item"].to_numpy(), minlength=ds.n_items), kind="stable")
    x = Candidates("item-to-item/swing", pop[:80], np.zeros(80))
    y = Candidates("non-personalized/popular", rng.permutation(ds.n_items)[:120], np.zeros(120))
    return _merge([(x, 60), (y, 100)])


def _features(eng: Engine, user: str, cs) -> dict[str, np.ndarray]:
    return candidate_features(eng.catalog, eng.context(user), cs)


def test_replayed_log_and_dataset_engine_have_equal_features(dense_log: Dataset, tmp_path: Path) -> None:
    a, b, _ = _engines(dense_log, tmp_path)
    try:
        users = dense_log.users["user_id"].astype(str).tolist() + ["never-seen"]
        live_1h = 0
        for k, user in enumerate(users):
            cs = _candidates(dense_log, k)
            fa, fb = _features(a, user, cs), _features(b, user, cs)
            assert list(fa) == list(fb)
            assert {"base.log_pop", "base.cat_1h", "base.cat_seq", "user.log_hist",
                    "recall.item-to-item/swing", "recall.non-personalized/popular"} <= set(fa)
            for name in fa:
                np.testing.assert_array_equal(fa[name], fb[name], err_msg=f"{user}: {name}")
            live_1h += int((fa["base.cat_1h"] > 0).any())
        assert live_1h >= 20  # the real-time counter is live in both, not 0 in both
    finally:
        a.close()
        b.close()


def test_dataset_engine_without_warm_state_has_the_skew(dense_log: Dataset, tmp_path: Path) -> None:
    ts = float(dense_log.events["ts"].max()) + 1.0
    cold = Engine(dense_log, _config(), tmp_path / "cold")
    cold.clock = lambda: ts
    try:
        cs = _candidates(dense_log, 0)
        users = dense_log.users["user_id"].astype(str).tolist()
        assert all(not _features(cold, u, cs)["base.cat_1h"].any() for u in users)
        cold.warm_state(ts)
        assert any(_features(cold, u, cs)["base.cat_1h"].any() for u in users)
        with pytest.raises(RuntimeError, match="already warmed"):
            cold.warm_state(ts)
    finally:
        cold.close()


def test_bounded_short_sequence_is_the_only_gap(dense_log: Dataset, tmp_path: Path) -> None:
    a, b, _ = _engines(dense_log, tmp_path, seq_len=3)
    try:
        differs: set[str] = set()
        for k, user in enumerate(dense_log.users["user_id"].astype(str).tolist()):
            cs = _candidates(dense_log, k)
            fa, fb = _features(a, user, cs), _features(b, user, cs)
            differs |= {n for n in fa if not np.array_equal(fa[n], fb[n])}
        assert differs == {"user.log_hist", "base.cat_seq"}
    finally:
        a.close()
        b.close()
