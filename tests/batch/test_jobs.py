"""Batch jobs on the local engine: the sharded phases reproduce the kernels bit for bit; the
engine choice fails with one line when it cannot be had."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from notefeed.batch import LocalEngine, open_engine, sharded_cap_log, sharded_rows
from notefeed.batch.base import BatchEngine
from notefeed.batch.jobs import _merge_capped, iter_user_shards, sharded_sequences, split_by_user, tasks_of
from notefeed.recall.item2item import ItemCFChannel, SwingChannel
from notefeed.recall.kernels import build_rows, cap_histories, cap_log, plan_blocks
from notefeed.recall.synthetic import synthetic_log


@pytest.fixture(scope="module")
def log():
    return synthetic_log(30_000, seed=3)


def same_csr(a, b) -> None:
    a, b = a.tocsr(), b.tocsr()
    assert a.shape == b.shape
    for f in ("indptr", "indices", "data"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


class ShardedLocal(LocalEngine):
    """The local engine running the sharded code paths (what the Ray engine runs, in-process)."""

    @property
    def workers(self) -> int:
        return 3

    def cap_log(self, *args, **kw):
        return sharded_cap_log(self, *args, shards=5, **kw)

    def build_rows(self, kernel, hist, item_users, rows, top_n, block=2048, progress=False, **params):
        return sharded_rows(self, kernel, hist, item_users, rows, top_n, block=block, **params)

    def sequences(self, users, items, ts, n_users):
        return sharded_sequences(self, users, items, ts, n_users, shards=5)


def test_engines_satisfy_the_protocol():
    assert isinstance(LocalEngine(), BatchEngine) and isinstance(ShardedLocal(), BatchEngine)
    with pytest.raises(ValueError, match="engine must be one of local, ray"):
        open_engine("spark")


def test_split_by_user_keeps_every_row_once():
    u = np.array([5, 1, 2, 5, 4, 1])
    parts = split_by_user(u, 2, np.arange(6))
    assert [p[0].tolist() for p in parts] == [[2, 4], [5, 1, 5, 1]]
    assert sorted(np.concatenate([p[1] for p in parts]).tolist()) == list(range(6))
    blocks = [(0, 3), (3, 5), (5, 9), (9, 10)]
    assert [b for t in tasks_of(blocks, 3) for b in map(tuple, t)] == blocks


@pytest.mark.parametrize("shards", [1, 3, 7, 70_000])
def test_user_shards_come_one_at_a_time_in_the_int64_keys_order(log, shards):
    u, i, t, _, _ = log
    key = u % shards  # the split as it was first written: a stable sort of the int64 key
    order = np.argsort(key, kind="stable")
    want = np.split(order, np.cumsum(np.bincount(key, minlength=shards))[:-1])
    it = iter_user_shards(u, shards, i, t)
    assert iter(it) is it  # a generator: a shard is copied out only when it is asked for
    got = list(it)
    assert len(got) == shards == len(split_by_user(u, shards, i, t))
    for idx, part in zip(want, got, strict=True):
        for a, b in zip((u, i, t), part, strict=True):
            np.testing.assert_array_equal(a[idx], b)
            assert b.flags.c_contiguous and b.dtype == np.int64


def test_merging_the_capped_shards_empties_their_list(log):
    u, i, t, nu, ni = log
    capped = [cap_histories(*p, nu, ni, 20) for p in split_by_user(u, 4, i, t)]
    got = _merge_capped(capped, nu, ni, 30)
    assert capped == []  # the shards' arrays (object-store pages on Ray) are let go
    for a, b in zip(cap_log(u, i, t, nu, ni, 20, 30), got, strict=True):
        same_csr(a, b)
    h, iu = _merge_capped([], nu, ni, 30)
    assert h.shape == (nu, ni) and iu.shape == (ni, nu) and h.nnz == iu.nnz == 0


def test_local_map_takes_a_generator():
    assert LocalEngine().map(_square, (k for k in range(5)), {"add": 1}) == [1, 2, 5, 10, 17]


def _square(shared, x):
    return x * x + shared["add"]


@pytest.mark.parametrize("shards", [1, 4, 7])
def test_sharded_capping_equals_cap_log(log, shards):
    u, i, t, nu, ni = log
    want = cap_log(u, i, t, nu, ni, 20, 30)
    got = sharded_cap_log(LocalEngine(), u, i, t, nu, ni, 20, 30, shards=shards)
    for a, b in zip(want, got, strict=True):
        same_csr(a, b)


@pytest.mark.parametrize("kernel,params", [("swing", {"alpha": 1.0, "beta": 0.3}), ("itemcf", {"a": 0.5})])
def test_sharded_rows_equal_build_rows(log, kernel, params):
    u, i, t, nu, ni = log
    hist, iu = cap_log(u, i, t, nu, ni, 20, 30)
    rows = np.arange(ni)
    assert len(plan_blocks(iu, rows, 2)) > 4  # several tasks
    want = build_rows(kernel, hist, iu, rows, 25, block=2, **params)
    got = sharded_rows(ShardedLocal(), kernel, hist, iu, rows, 25, block=2, **params)
    same_csr(want, got)


@pytest.mark.parametrize("cls", [SwingChannel, ItemCFChannel])
def test_channel_on_an_engine_fits_the_same_table(log, cls):
    u, i, t, nu, ni = log
    frame = pd.DataFrame({"user": u, "item": i, "ts": t})
    want = cls(item_cap=20, user_cap=30, top_n=25, block=2).fit_log(frame, nu, ni)
    ch = cls(item_cap=20, user_cap=30, top_n=25, block=2)
    ch.engine = ShardedLocal()
    ch.fit_log(frame, nu, ni)
    same_csr(want.sim, ch.sim)
    same_csr(want.hist, ch.hist)


def test_kernels_leave_read_only_inputs_alone(log):
    u, i, t, nu, ni = log
    hist, iu = cap_log(u, i, t, nu, ni, 20, 30)
    hist.data.setflags(write=False)  # as the Ray object store hands them to tasks
    build_rows("swing", hist, iu, np.arange(50), 10)
    build_rows("itemcf", hist, iu, np.arange(50), 10)


def test_engine_flag_errors_are_one_line(monkeypatch):
    from typer.testing import CliRunner

    from notefeed.cli import app

    r = CliRunner().invoke(app, ["train", "--workspace", ".", "--engine", "spark"])
    assert r.exit_code == 2 and "--engine: must be one of local, ray" in r.output
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    r = CliRunner().invoke(app, ["train", "--workspace", ".", "--engine", "ray"])
    assert r.exit_code == 2, r.output
    assert "pip install 'notefeed[ray]'" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["bench", "batch", "--engine", "ray", "--events", "5000"])
    assert r.exit_code == 2 and "pip install 'notefeed[ray]'" in r.output
    r = CliRunner().invoke(app, ["bench", "batch", "--engine", "local", "--recycle", "often"])
    assert r.exit_code == 2 and "--recycle: auto, on or off" in r.output
    r = CliRunner().invoke(app, ["bench", "batch", "--engine", "local", "--worker-tasks", "0"])
    assert r.exit_code == 2 and "Invalid value for '--worker-tasks'" in r.output


def test_an_unreachable_cluster_fails_fast():
    from notefeed.batch.ray_jobs import _reachable

    with pytest.raises(ConnectionError, match="nothing answers at 127.0.0.1:1"):
        _reachable("ray://127.0.0.1:1", timeout_s=2)
    _reachable("auto")  # left to Ray


@pytest.fixture(scope="module")
def lake_ws(tmp_path_factory):
    """A workspace (mixed event types over several days) with its event lake exported."""
    from notefeed.data.lake import EventLake, load_lake_dataset
    from tests.data.test_lake import _dataset, _workspace

    ws_dir = _workspace(tmp_path_factory.mktemp("lake-ws"), _dataset(n=3000, seed=2))
    lake = EventLake.for_workspace(ws_dir)
    lake.export_workspace(ws_dir, chunk=700)
    return lake, load_lake_dataset(ws_dir)


def check_lake_capping(engine, lake_ws) -> None:
    from notefeed.batch import lake_cap_log
    from notefeed.recall._common import positive_log

    lake, ds = lake_ws
    log = positive_log(ds)
    want = cap_log(log["user"], log["item"], log["ts"], ds.n_users, ds.n_items, 5, 7)
    got = lake_cap_log(engine, lake.root, ds.users["user_id"], ds.notes["note_id"], 5, 7, shards=3)
    for a, b in zip(want, got, strict=True):
        same_csr(a, b)
    same_csr(SwingChannel(item_cap=5, user_cap=7, block=2).fit(ds).sim,
             SwingChannel(item_cap=5, user_cap=7, block=2).fit_capped(*got).sim)


def test_capping_straight_from_the_lake_equals_the_dataset(lake_ws):
    check_lake_capping(ShardedLocal(), lake_ws)


def check_sequences(engine, log) -> None:
    """``engine.sequences`` equals the local training sequences, user by user."""
    from notefeed.recall.sequential import log_sequences

    u, i, t, nu, _ = log
    order = np.argsort(t, kind="stable")  # a positive log is time-ordered
    frame = pd.DataFrame({"user": u[order], "item": i[order], "ts": t[order]})
    frame = pd.concat([frame, frame.iloc[::7]]).sort_values("ts", kind="stable")  # repeats: first kept
    want = log_sequences(frame, nu + 2)  # two users with no events at all
    got = engine.sequences(frame["user"].to_numpy(), frame["item"].to_numpy(), frame["ts"].to_numpy(), nu + 2)
    assert len(got) == len(want) and sum(len(q) for q in want) > 0 and len(got[-1]) == 0
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_sharded_sequences_equal_the_local_ones(log):
    check_sequences(ShardedLocal(), log)
    check_sequences(LocalEngine(), log)


def test_sequence_model_fits_the_same_on_an_engine(log):
    from notefeed.data.dataset import Dataset
    from notefeed.recall.sequential import SASRecChannel

    u, i, t, _, _ = log
    ds = Dataset.build("seq", pd.DataFrame({"user_id": [f"u{x}" for x in u[:4000]], "note_id": [f"n{x}" for x in i[:4000]],
                                            "ts": t[:4000], "type": "click"}))
    params = {"dim": 8, "layers": 1, "heads": 1, "max_len": 10, "epochs": 1, "progress": False}
    want = SASRecChannel(**params).fit(ds)
    ch = SASRecChannel(**params)
    ch.engine = ShardedLocal()
    np.testing.assert_array_equal(want.item_vectors, ch.fit(ds).item_vectors)


def test_an_engine_child_reports_its_own_peak_not_the_benchs():
    import subprocess

    big = np.ones(2**30 // 8)  # 1 GiB: the bench's parent has generated the log when it starts a child
    code = "from notefeed.batch.bench import _own_peak_rss_mib; print(_own_peak_rss_mib())"
    own = float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    assert 0 < own < 800  # ru_maxrss there would be >= 1024 on Linux: it is carried across fork + exec
    del big


def test_the_tree_cpu_counts_children_that_have_exited():
    """Recycled Ray workers exit after their task: their CPU (worker start included) must
    still count in the bench's process-tree CPU, through their reaper's cutime/cstime."""
    import os
    import subprocess

    from notefeed.batch.bench import _tree_cpu

    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass"
    t0 = sum(_tree_cpu(os.getpid()).values())
    subprocess.run([sys.executable, "-c", burn], check=True)  # exits and is reaped by this process
    assert sum(_tree_cpu(os.getpid()).values()) - t0 >= 0.45
