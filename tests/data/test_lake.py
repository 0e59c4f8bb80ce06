"""The event lake: export equals the workspace, append-only and idempotent, compaction keeps
each event exactly once, crash leftovers never make a partition unreadable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from notefeed.data import lake as lake_mod
from notefeed.data.dataset import DataError, Dataset
from notefeed.data.lake import EventLake, load_lake_dataset
from notefeed.data.store import Workspace

DAY = 86400


def _dataset(n: int = 300, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    events = pd.DataFrame({
        "user_id": [f"u{x}" for x in rng.integers(0, 20, n)],
        "note_id": [f"n{x}" for x in rng.integers(0, 40, n)],
        "ts": 1_700_000_000 + rng.integers(0, 5 * DAY, n),
        "type": rng.choice(["click", "like", "impression", "collect"], n),
        "dwell_s": np.where(rng.random(n) < 0.5, rng.random(n) * 10, np.nan),
        "position": pd.array(np.where(rng.random(n) < 0.5, rng.integers(0, 9, n), -1)).astype("Int32"),
        "request_id": [f"r{x}" if x % 3 else None for x in range(n)],
        "surface": rng.choice(["feed", "search"], n),
    })
    events.loc[events["position"] < 0, "position"] = pd.NA
    return Dataset.build("lake-tiny", events)


def _workspace(tmp_path, ds: Dataset | None = None):
    with Workspace.open(tmp_path) as ws:
        ws.save_dataset(ds or _dataset())
    return tmp_path


def test_export_reads_back_as_the_workspace_dataset(tmp_path):
    ws_dir = _workspace(tmp_path)
    lake = EventLake.for_workspace(ws_dir)
    assert lake.export_workspace(ws_dir) == 300
    assert len(lake.days()) >= 5 and all(p.parent.name.startswith("day=") for p in lake.files())
    with Workspace.open(ws_dir, create=False) as ws:
        want = ws.load_dataset()
    got = load_lake_dataset(ws_dir)
    pd.testing.assert_frame_equal(got.events, want.events)
    assert got.stats() == want.stats()
    # every row sits in the partition of its own UTC day
    bad = lake.query("SELECT count(*) AS n FROM events WHERE strftime(to_timestamp(ts), '%Y-%m-%d') <> day")
    assert int(bad["n"].iloc[0]) == 0


def test_export_is_append_only_and_idempotent(tmp_path):
    ws_dir = _workspace(tmp_path)
    lake = EventLake.for_workspace(ws_dir)
    lake.export_workspace(ws_dir)
    files = lake.files()
    assert lake.export_workspace(ws_dir) == 0 and lake.files() == files
    new = pd.DataFrame({"user_id": ["u1", "u2"], "note_id": ["n1", "n2"], "ts": [1_700_000_000 + 9 * DAY] * 2,
                        "type": ["like", "click"]})
    with Workspace.open(ws_dir) as ws:
        ws.append_events(new)
    assert lake.export_workspace(ws_dir) == 2
    assert set(files) < set(lake.files()) and lake.count() == 302


def test_compaction_merges_parts_and_drops_repeats(tmp_path):
    lake = EventLake(tmp_path / "lake")
    base = pd.DataFrame({"seq": np.arange(1, 7), "event_id": ["e1", "e2", None, None, "e5", "e6"],
                         "user_id": list("aabbcc"), "note_id": list("xyxyxy"),
                         "ts": [0, 10, 20, DAY, DAY + 1, DAY + 2], "type": ["click"] * 6})
    lake.append(base.iloc[:3])
    lake.append(base.iloc[3:])
    lake.append(base.iloc[1:2].assign(seq=7))  # a client retry: same event id, new seq
    lake.append(base.iloc[:3])  # the same batch again replaces its own part
    assert lake.count() == 7 and len(lake.files()) == 3
    r = lake.compact()
    assert (r.days, r.files_before, r.files_after, r.rows_before, r.rows_after) == (1, 2, 1, 4, 3)
    assert lake.count() == 6 and len(lake.files()) == 2
    assert lake.query("SELECT seq FROM events ORDER BY seq")["seq"].tolist() == [1, 2, 3, 4, 5, 6]
    again = lake.compact(min_files=1)  # compacting a compacted day changes nothing
    assert again.rows_before == again.rows_after == 6 and lake.count() == 6


def test_crash_leftovers_are_recovered(tmp_path, monkeypatch):
    lake = EventLake(tmp_path / "lake")
    frame = pd.DataFrame({"seq": [1, 2, 3], "user_id": ["a"] * 3, "note_id": ["x"] * 3, "ts": [0, 1, 2],
                          "type": ["click"] * 3})
    lake.append(frame.iloc[:2])
    lake.append(frame.iloc[2:])
    day = lake.root / "day=1970-01-01"
    (day / ".part-000000000009-000000000009.parquet.tmp").write_bytes(b"half a file")  # died mid-write
    assert lake.count() == 3  # readers never match temp names
    # died after renaming the merged part, before deleting its inputs
    real_finish = EventLake._finish_compaction
    monkeypatch.setattr(EventLake, "_finish_compaction", lambda self, d: None)
    lake.compact()
    assert len(lake.files()) == 3
    monkeypatch.setattr(EventLake, "_finish_compaction", real_finish)
    lake.recover()
    assert len(lake.files()) == 1 and lake.count() == 3
    assert not list(day.glob(".*.tmp")) and not (day / "_compact.json").exists()


def test_export_crash_midway_is_redone_without_duplicates(tmp_path, monkeypatch):
    ws_dir = _workspace(tmp_path)
    lake = EventLake.for_workspace(ws_dir)
    real = lake_mod._write_atomic
    calls = {"n": 0}

    def dying(path, write):  # the third part file of the first chunk never lands
        if path.suffix == ".parquet":
            calls["n"] += 1
            if calls["n"] == 3:
                raise OSError("disk gone")
        real(path, write)

    monkeypatch.setattr(lake_mod, "_write_atomic", dying)
    with pytest.raises(OSError):
        lake.export_workspace(ws_dir, chunk=100)
    monkeypatch.setattr(lake_mod, "_write_atomic", real)
    lake.export_workspace(ws_dir, chunk=100)
    assert lake.count() == 300
    assert lake.query("SELECT count(DISTINCT seq) AS n FROM events")["n"].iloc[0] == 300


def test_cli_export_compact_query(tmp_path):
    from notefeed.cli import app

    ws_dir = _workspace(tmp_path)
    run = CliRunner().invoke
    r = run(app, ["data", "lake", "export", "--workspace", str(ws_dir)])
    assert r.exit_code == 0, r.output
    assert "exported 300 events" in r.output
    r = run(app, ["data", "lake", "compact", "--workspace", str(ws_dir)])
    assert r.exit_code == 0 and "compacted" in r.output, r.output
    r = run(app, ["data", "lake", "query", "SELECT count(*) AS n FROM events", "--workspace", str(ws_dir)])
    assert r.exit_code == 0 and "300" in r.output, r.output
    r = run(app, ["data", "lake", "query", "SELECT nope FROM events", "--workspace", str(ws_dir)])
    assert r.exit_code == 1 and "error: SQL" in r.output


def test_a_replaced_workspace_is_refused_or_rebuilt(tmp_path):
    ws_dir = _workspace(tmp_path)
    lake = EventLake.for_workspace(ws_dir)
    lake.export_workspace(ws_dir)
    other = _dataset(n=120, seed=7)
    with Workspace.open(ws_dir) as ws:
        ws.save_dataset(other, replace=True)  # new seqs continue after the old ones
    with pytest.raises(DataError, match="--rebuild"):
        lake.export_workspace(ws_dir)
    assert lake.export_workspace(ws_dir, rebuild=True) == 120
    pd.testing.assert_frame_equal(load_lake_dataset(ws_dir).events, other.events)


def test_compaction_of_client_retries_does_not_look_like_a_replaced_workspace(tmp_path):
    ws_dir = _workspace(tmp_path)
    lake = EventLake.for_workspace(ws_dir)
    lake.export_workspace(ws_dir)
    day = lake.days()[0]
    part = lake.read_events(f"day = '{day}'").head(1).assign(seq=10_000, event_id="same")
    lake.append(part)
    lake.append(part.assign(seq=10_001))  # the same client event twice
    lake.compact()
    assert lake.count() == 301
    assert lake.export_workspace(ws_dir) == 0  # no false alarm
