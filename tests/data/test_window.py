"""The data window (``data.window_days``): what ``serve`` and ``notefeed train`` read of the
store's events. DuckDB's reading (``Workspace.load_dataset``) keeps exactly the events the
array rule (:func:`window_mask`) keeps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from notefeed.data.dataset import Dataset, window_mask
from notefeed.data.store import Workspace
from notefeed.schema import EVENT_TYPES
from notefeed.serve.config import ConfigError, parse_config

DAY = 86_400


def _events(rows: list[tuple[str, str, int, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "note_id", "ts", "type"])


def test_the_window_keeps_recent_events_each_users_newest_positives_follows_and_hides():
    now = 100 * DAY
    ds = Dataset.build("w", _events([
        ("away", "a", now - 50 * DAY, "click"),       # the away user's 3 positives: 2 newest kept
        ("away", "b", now - 40 * DAY, "like"),
        ("away", "c", now - 30 * DAY, "collect"),
        ("away", "d", now - 30 * DAY, "impression"),  # not a positive: not kept by keep_per_user
        ("away", "e", now - 60 * DAY, "hide"),        # a hide stays true
        ("away", "creator", now - 70 * DAY, "follow"),
        ("busy", "a", now - 20 * DAY, "click"),       # older than the window, and not among the newest 2
        ("busy", "b", now - 2 * DAY, "click"),
        ("busy", "c", now - 1 * DAY, "like"),
        ("busy", "d", now - 1 * DAY, "impression"),   # in the window
        ("busy", "e", now, "share"),
    ]))
    keep = window_mask(ds.events, window_days=7, keep_per_user=2)
    kept = ds.events[keep]
    got = sorted(zip(kept["user"].map(lambda u: ds.users["user_id"][u]), kept["item"].map(
        lambda i: ds.notes["note_id"][i]), kept["type"].astype(str), strict=True))
    assert got == sorted([("away", "b", "like"), ("away", "c", "collect"), ("away", "e", "hide"),
                          ("away", "creator", "follow"), ("busy", "b", "click"), ("busy", "c", "like"),
                          ("busy", "d", "impression"), ("busy", "e", "share")])
    assert window_mask(ds.events, window_days=7, keep_per_user=0).sum() == 6  # the window, follows, hides
    assert window_mask(ds.events, window_days=0, keep_per_user=2).all()  # 0: every event
    assert ds.windowed(0, 2) is ds
    w = ds.windowed(7, 2)
    assert len(w.events) == 8 and w.n_users == ds.n_users and w.n_items == ds.n_items
    assert w.windowed(7, 2) is w  # a window of a window is itself: training may apply it again


def _random_dataset(seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    n = 3000
    types = np.array(EVENT_TYPES, dtype=object)
    ev = pd.DataFrame({
        "user_id": [f"u{k}" for k in rng.integers(0, 60, n)],
        "note_id": [f"n{k}" for k in rng.integers(0, 200, n)],
        "ts": rng.integers(0, 40, n) * (DAY // 4),  # many equal timestamps: ties broken by append order
        "type": types[rng.integers(0, len(types), n)],
    })
    return Dataset.build(f"r{seed}", ev)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("days", "keep"), [(3, 5), (0.5, 0), (2.25, 40), (100, 5)])
@pytest.mark.parametrize("coded", [True, False])
def test_the_store_reads_exactly_the_events_the_array_rule_keeps(tmp_path, seed, days, keep, coded):
    ds = _random_dataset(seed)
    with Workspace.open(tmp_path / "ws") as ws:
        ws.save_dataset(ds)
        # more events appended later, older than some stored ones (append order is not time order)
        ws.append_events(_events([("u1", "n1", 2 * DAY, "click"), ("u2", "n3", 9 * DAY, "like"),
                                  ("u1", "n2", 2 * DAY, "like")]))
        if not coded:  # a row the tables cannot code (written behind the store's back): read in pandas
            ws.con.execute(f"INSERT INTO events (user_id, note_id, ts, type, surface) VALUES ('u1', 'zz', {10 * DAY}, 'click', "
                           "'feed')")
            assert ws._coded_events(days, keep) is None
        whole = ws.load_dataset()
        read = ws.load_dataset(window_days=days, keep_per_user=keep)
    want = whole.windowed(days, keep)
    assert 0 < len(read.events) <= len(whole.events)
    pd.testing.assert_frame_equal(read.events, want.events)
    assert read.n_users == whole.n_users and read.n_items == whole.n_items  # ids keep their rows
    assert read.log_marks == whole.log_marks and read.meta == whole.meta


def test_a_bad_window_is_an_error_naming_the_field():
    with pytest.raises(ConfigError, match="data.window_days"):
        parse_config({"data": {"window_days": -1}})
    with pytest.raises(ConfigError, match="data.keep_per_user"):
        parse_config({"data": {"keep_per_user": "many"}})
    assert parse_config({"data": {"window_days": 30}}).data.window_days == 30
