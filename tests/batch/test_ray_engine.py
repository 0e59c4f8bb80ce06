"""The Ray engine on a 2-CPU local cluster (started once for this module): every job equals
the local engine's result exactly on small data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from notefeed.batch import embed_items, open_engine  # noqa: E402
from notefeed.batch.ray_jobs import RayEngine  # noqa: E402
from notefeed.recall.item2item import ItemCFChannel, SwingChannel  # noqa: E402
from notefeed.recall.kernels import build_rows, cap_log  # noqa: E402
from notefeed.recall.synthetic import synthetic_log  # noqa: E402
from tests.batch.test_jobs import check_lake_capping, check_sequences, lake_ws, same_csr  # noqa: E402, F401


@pytest.fixture(scope="module")
def engine():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    eng = RayEngine(shards=3, tasks_per_worker=3)
    try:
        yield eng
    finally:
        eng.close()
        ray.shutdown()


@pytest.fixture(scope="module")
def log():
    return synthetic_log(40_000, seed=5)


def test_reuses_the_running_cluster(engine):
    assert engine.workers == 2 and not engine._owns  # close() leaves a cluster it did not start


@pytest.mark.parametrize("kernel", ["swing", "itemcf"])
def test_capping_and_rows_equal_local(engine, log, kernel):
    u, i, t, nu, ni = log
    want_h, want_iu = cap_log(u, i, t, nu, ni, 20, 30)
    hist, iu = engine.cap_log(u, i, t, nu, ni, 20, 30)
    same_csr(want_h, hist)
    same_csr(want_iu, iu)
    rows = np.arange(ni)
    same_csr(build_rows(kernel, want_h, want_iu, rows, 25, block=2),
             engine.build_rows(kernel, hist, iu, rows, 25, block=2))
    assert {s["job"] for s in engine.task_stats} >= {"_cap_shard", "_rows_task"}
    assert all(s["peak_rss_mb"] > 0 for s in engine.task_stats)


@pytest.mark.parametrize("cls", [SwingChannel, ItemCFChannel])
def test_channel_fit_on_ray_equals_local(engine, log, cls):
    u, i, t, nu, ni = log
    frame = pd.DataFrame({"user": u, "item": i, "ts": t})
    want = cls(item_cap=20, user_cap=30, top_n=25, block=2).fit_log(frame, nu, ni)
    ch = cls(item_cap=20, user_cap=30, top_n=25, block=2)
    ch.engine = engine
    ch.fit_log(frame, nu, ni)
    same_csr(want.sim, ch.sim)


def test_train_fits_item_to_item_channels_on_ray(engine, tiny_ds):
    from notefeed.models.train import _fit_on_engine
    from notefeed.serve.config import ServeConfig

    cfg = ServeConfig()
    channels = [c.model_dump() for c in cfg.recall.channels]
    for c in channels:  # the default channels, SASRec kept short
        if c["name"] == "sequence/sasrec":
            c["params"] = {**c["params"], "epochs": 1, "min_steps": 0, "dim": 8, "progress": False}
    cfg = cfg.with_overrides(recall={"channels": channels})
    on_ray = _fit_on_engine(cfg, tiny_ds, engine, progress=False)
    local = _fit_on_engine(cfg, tiny_ds, open_engine("local"), progress=False)
    names = {k: v.name for k, v in on_ray.items()}
    assert {"item-to-item/swing", "item-to-item/itemcf", "sequence/sasrec"} <= set(names.values())
    for k, ch in on_ray.items():
        if ch.name == "sequence/sasrec":  # its training sequences were built on the engine
            np.testing.assert_array_equal(local[k].item_vectors, ch.item_vectors)
        else:
            same_csr(local[k].sim, ch.sim)
        assert ch.engine is None  # serving-time updates run in-process


def test_embeddings_and_index_equal_local(engine, tiny_ds):
    from notefeed.recall.embedding import TwoTowerChannel

    ch = TwoTowerChannel(dim=16, epochs=1, batch_size=256, buckets=1024, seed=0).fit(tiny_ds)
    n = tiny_ds.n_items
    vec, index = embed_items(engine, ch, batch=32)
    local = ch.encode_items(np.arange(1, n + 1), ch.item_side, batch=32)
    np.testing.assert_array_equal(vec, local)
    np.testing.assert_allclose(vec, ch.item_vectors, rtol=1e-5, atol=1e-6)
    assert index.ntotal == n
    q = local[:5]
    s_want, i_want = ch.index.search(q, 10)
    s_got, i_got = index.search(q, 10)
    np.testing.assert_array_equal(i_want, i_got)
    np.testing.assert_allclose(s_want, s_got, rtol=1e-5)


@pytest.fixture(scope="module")
def tiny_ds():
    from tests.recall.conftest import make_community

    return make_community()


def test_capping_from_the_lake_on_ray_equals_the_dataset(engine, lake_ws):  # noqa: F811
    check_lake_capping(engine, lake_ws)


def test_feed_eval_sharded_by_user_on_ray_equals_one_process(engine, tmp_path):
    from tests.eval.test_feed import feed_both_ways

    (pages, stages, _), (pages2, stages2, timing2) = feed_both_ways(engine, tmp_path)
    np.testing.assert_array_equal(pages, pages2)  # every worker served the stored version
    for k in stages:
        np.testing.assert_array_equal(stages[k], stages2[k])
    assert timing2["requests_with_errors"] == 0 and timing2["feed_workers"] == 2
    assert "_stored_chunk" in {s["job"] for s in engine.task_stats}


def test_training_sequences_on_ray_equal_local(engine, log):
    check_sequences(engine, log)
    assert "_sequence_shard" in {s["job"] for s in engine.task_stats}


def _total(shared, a):
    return int(a.sum()) + shared["add"]


def test_map_drops_each_generated_item_once_it_is_sent(engine):
    import weakref

    sent: list = []

    def items():
        for k in range(6):
            # every item but the one just before is gone: .remote() copied it into the object
            # store and nothing in the driver holds it (the bench's log shards, one at a time)
            assert sum(r() is not None for r in sent[:-1]) == 0
            a = np.full(100_000, k, np.int64)  # 800 kB: passed through the object store
            sent.append(weakref.ref(a))
            yield a

    assert engine.map(_total, items(), {"add": 1}) == [k * 100_000 + 1 for k in range(6)]
    assert all(r() is None for r in sent)


def _pid_task(shared, x):
    import os

    return os.getpid(), x + shared["add"]


def test_recycle_runs_each_task_in_a_fresh_worker(engine, monkeypatch):
    """A worker keeps the object-store pages it ever read in its RSS, so large maps run each
    task in a fresh worker: distinct pids; small maps reuse theirs. Results are the same."""
    from notefeed.batch import ray_jobs

    small = engine.map(_pid_task, range(6), {"add": 10})
    assert [r[1] for r in small] == list(range(10, 16))
    assert len({r[0] for r in small}) < 6  # "auto" under the threshold: workers reused
    eng = RayEngine(recycle=True, worker_tasks=1)
    fresh = eng.map(_pid_task, range(2), {"add": 1})  # each fresh worker costs its start (~s)
    assert [r[1] for r in fresh] == [1, 2] and len({r[0] for r in fresh}) == 2
    monkeypatch.setattr(ray_jobs, "RECYCLE_BYTES", 1024)  # "auto" over the threshold
    auto = RayEngine(worker_tasks=1).map(_pid_task, iter(range(2)), {"add": np.zeros(512), "x": 0})
    assert auto[1][1].tolist() == [1.0] * 512 and len({r[0] for r in auto}) == 2
    with pytest.raises(ValueError, match="recycle"):
        RayEngine(recycle="sometimes")
    twice = RayEngine(recycle=True, worker_tasks=2).map(_pid_task, range(4), {"add": 0})
    pids = [r[0] for r in twice]
    assert [r[1] for r in twice] == list(range(4)) and max(pids.count(p) for p in pids) <= 2
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="worker_tasks"):
            RayEngine(worker_tasks=bad)


def test_bench_counts_the_cpu_of_recycled_workers(engine, tmp_path):
    """A recycled worker exits after its task and its CPU leaves the process tree with it: the
    bench adds its task's CPU and (a worker started for the task) its start, so Ray's CPU per
    event is not flattered by recycling. Same table as the local engine."""
    import json

    from notefeed.batch.bench import run_engine

    u, i, t, nu, ni = synthetic_log(20_000, seed=2)
    for name, arr in (("users", u), ("items", i), ("ts", t)):
        np.save(tmp_path / f"{name}.npy", arr)
    (tmp_path / "meta.json").write_text(json.dumps({"n_users": int(nu), "n_items": int(ni)}))
    # one worker: 5 tasks (1 cap shard, 4 row tasks), each fresh worker costing its start (~s)
    args = (tmp_path, "swing", 1, 20, 30, 25, 2)
    local = run_engine("local", *args, progress=False)
    for k in (1, 2):  # a fresh worker per task; then up to two tasks per worker, its start counted once
        ray_run = run_engine("ray", *args, progress=False, recycle=True, worker_tasks=k)
        assert ray_run["table_sha256"] == local["table_sha256"] and ray_run["worker_tasks"] == k
        assert ray_run["tasks"] >= 4 and ray_run["worker_processes"] >= ray_run["tasks"] / k
        tasks_cpu = ray_run["_cap_shard_cpu_s_sum"] + ray_run["_rows_task_cpu_s_sum"]
        assert ray_run["fresh_worker_start_cpu_s"] > 0.2 * ray_run["worker_processes"]  # imports: ~s per worker
        assert ray_run["cpu_s"] >= ray_run["driver_cpu_s"] + tasks_cpu + 0.5 * ray_run["fresh_worker_start_cpu_s"]


def test_payload_bytes():
    import scipy.sparse as sp

    from notefeed.batch.ray_jobs import payload_bytes

    m = sp.random(10, 10, density=0.5, format="csr", dtype=np.float32, random_state=0)
    want = m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
    assert payload_bytes({"a": np.zeros(4, np.int64), "b": (m, "text", 3)}) == 32 + want
    assert payload_bytes(None) == 0 and payload_bytes([[[[np.zeros(8)]]]]) == 0  # past three levels
