"""Serving on several processes: two `notefeed serve` processes on one workspace and one
Redis (what `serve --workers N` runs behind one port) see each other's events and notes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from notefeed.serve.bench import TOKEN, free_port, start_server, stop_server
from notefeed.serve.bench_online import _live_workers

H = {"Authorization": f"Bearer {TOKEN}"}
MINIMAL = Path(__file__).parents[2] / "configs" / "minimal.yaml"


def _config(tmp_path: Path, redis_url: str, prefix: str, **sections: dict) -> Path:
    cfg = yaml.safe_load(MINIMAL.read_text())
    cfg["online"] = {"backend": "redis", "redis_url": redis_url, "redis_prefix": prefix}
    cfg["coldstart"] = {"enabled": False}
    cfg.update(sections)
    p = tmp_path / "workers.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _until(check, timeout: float = 10.0) -> float:
    """Seconds until ``check()`` is true (fails the test after ``timeout``)."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - t0


def test_an_event_posted_to_one_worker_is_in_the_next_feed_of_another(redis_url, redis_client, tmp_path):
    ws = tmp_path / "ws"
    cfg = _config(tmp_path, redis_url, "w1")
    pa, pb = free_port(), free_port()
    a = start_server(ws, pa, ["--config", str(cfg)], timeout=120)
    b = None
    try:
        A, B = f"http://127.0.0.1:{pa}", f"http://127.0.0.1:{pb}"
        b = start_server(ws, pb, ["--config", str(cfg)], timeout=120)
        for i in range(30):  # published on A only
            r = httpx.post(f"{A}/v1/notes", json={"note_id": f"p{i}", "author_id": f"a{i}"}, headers=H)
            assert r.status_code == 201
        notes_s = _until(lambda: httpx.get(f"{B}/healthz").json()["notes"] == 30)
        first = [x["note_id"] for x in httpx.get(f"{B}/v1/feed", params={"user_id": "u1", "n": 5}).json()["items"]]
        assert len(first) == 5
        r = httpx.post(f"{A}/v1/events", headers=H,
                       json={"events": [{"user_id": "u1", "note_id": first[0], "ts": int(time.time()), "type": "click"}]})
        assert r.json()["accepted"] == 1
        t0 = time.monotonic()
        _until(lambda: first[0] not in [x["note_id"] for x in
                                         httpx.get(f"{B}/v1/feed", params={"user_id": "u1", "n": 5}).json()["items"]])
        feed_s = time.monotonic() - t0
        assert httpx.get(f"{B}/v1/users/u1").json()["short_seq"] == [first[0]]
        _until(lambda: httpx.get(f"{B}/healthz").json()["followed_events"] == 1)  # popularity etc. folded in
        assert httpx.get(f"{A}/healthz").json()["followed_events"] == 0  # its own event is not folded twice
        # an event B accepts on a note A published reaches A's in-memory parts too
        httpx.post(f"{B}/v1/events", headers=H,
                   json={"events": [{"user_id": "u2", "note_id": "p7", "ts": int(time.time()), "type": "like"}]})
        _until(lambda: httpx.get(f"{A}/healthz").json()["followed_events"] == 1)
        # a follow posted to A (on a note by a3) is a follow on B too: its social/follow recalls a3
        httpx.post(f"{A}/v1/events", headers=H,
                   json={"events": [{"user_id": "u2", "note_id": "p3", "ts": int(time.time()), "type": "follow"}]})
        _until(lambda: httpx.get(f"{B}/v1/users/u2").json()["followed"] == ["a3"])
        # a note taken down on A is down on B too (the note log's removals, followed)
        assert httpx.delete(f"{A}/v1/notes/p5", headers=H).json()["removed"] is True
        _until(lambda: httpx.get(f"{B}/v1/notes/p5/related").status_code == 410)
        assert httpx.get(f"{B}/healthz").json()["removed_notes"] == 1
        # ... and restored on A, it is back on B
        assert httpx.post(f"{A}/v1/notes/p5/restore", headers=H).json()["was_removed"] is True
        _until(lambda: httpx.get(f"{B}/v1/notes/p5/related").status_code == 200)
        assert httpx.get(f"{B}/healthz").json()["removed_notes"] == 0
        # a block set on A holds on B (the block log, followed)
        assert httpx.put(f"{A}/v1/users/u2/blocks/a7", headers=H).json()["blocked"] is True
        _until(lambda: httpx.get(f"{B}/v1/users/u2").json()["blocked"] == ["a7"])
        # a follower count sent to A is B's too
        assert httpx.put(f"{A}/v1/creators/a7", json={"followers": 5000}, headers=H).status_code == 200
        _until(lambda: httpx.get(f"{B}/v1/creators/a7").json()["small_creator"] is False)
        print(f"note visible on the other worker after {notes_s:.3f} s; event in its feed after {feed_s:.3f} s")
        assert feed_s < 5.0 and notes_s < 5.0
    finally:
        stop_server(a)
        if b is not None:
            stop_server(b)
    assert redis_client.xlen("w1:events") == 3


def test_serve_workers_starts_n_processes_behind_one_port(redis_url, redis_client, tmp_path):
    ws = tmp_path / "ws"
    port = free_port()
    proc = start_server(ws, port, ["--config", str(_config(tmp_path, redis_url, "w2")), "--workers", "2"],
                        timeout=180)
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.post(f"{base}/v1/notes", json={"note_id": "x1", "author_id": "a"}, headers=H).status_code == 201
        pids = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # both workers up: each has the note (log or follower)
            h = httpx.get(f"{base}/healthz").json()
            assert h["notes"] == 1 or time.monotonic() < deadline - 50
            pids.add(h["pid"])
            kids = _live_workers(proc.pid)
            if len(kids) >= 2:
                break
            time.sleep(0.2)
        assert len(kids) == 2 and pids <= set(kids)
    finally:
        stop_server(proc)


def test_search_on_every_worker_finds_the_notes_published_on_any(redis_url, redis_client, tmp_path):
    """Two servers on one workspace. Before, both opened WORKSPACE/search itself: the second
    could not index even its own notes (tantivy's writer lock; a counted stage error), and
    neither indexed the other's. Now each serves its own copy of the shared index (built and
    caught up under the index's lock), adds every worker's notes to it, and removes it on stop;
    the copy of a killed server is removed at the next start."""
    import signal

    ws = tmp_path / "ws"
    # lexical search only: on two notes the dense side returns both for any query, with
    # similarities that depend on which notes the index's encoder was fitted on (timing)
    cfg = _config(tmp_path, redis_url, "w5", search={"dense": False})
    pa, pb = free_port(), free_port()
    a = start_server(ws, pa, ["--config", str(cfg)], timeout=120)
    b = c = None
    try:
        A, B = f"http://127.0.0.1:{pa}", f"http://127.0.0.1:{pb}"
        b = start_server(ws, pb, ["--config", str(cfg)], timeout=120)
        for X, note, title in ((A, "s1", "zephyrquux lagoon"), (B, "s2", "zephyrquux reef")):
            r = httpx.post(f"{X}/v1/notes", json={"note_id": note, "author_id": "a1", "title": title}, headers=H)
            assert r.status_code == 201
        for X in (A, B):
            def found(X=X):  # noqa: ANN001
                r = httpx.get(f"{X}/v1/search", params={"q": "zephyrquux"}, timeout=60)
                return r.status_code == 200 and {x["note_id"] for x in r.json()["items"]} == {"s1", "s2"}
            _until(found, timeout=60)
            assert "search:add_notes" not in httpx.get(f"{X}/metrics").text
        # a note edited on A is found by its new title on B
        r = httpx.patch(f"{A}/v1/notes/s2", json={"title": "quuxzeph atoll"}, headers=H)
        assert r.status_code == 200 and r.json()["changed"] == ["title"]
        _until(lambda: [x["note_id"] for x in httpx.get(f"{B}/v1/search", params={"q": "quuxzeph"}).json()["items"]]
               [:1] == ["s2"], timeout=30)
        copies = sorted(p.name for p in (ws / "search.run").iterdir())
        assert len(copies) == 2
        stop_server(b)
        b = None
        assert len(list((ws / "search.run").iterdir())) == 1  # B's copy went with it
        a.send_signal(signal.SIGKILL)  # A's copy stays behind ...
        a.wait(30)
        assert len(list((ws / "search.run").iterdir())) == 1
        pc = free_port()
        c = start_server(ws, pc, ["--config", str(cfg)], timeout=120)
        C = f"http://127.0.0.1:{pc}"
        r = httpx.get(f"{C}/v1/search", params={"q": "zephyrquux"}, timeout=60)
        assert {x["note_id"] for x in r.json()["items"]} == {"s1"}  # s2 was edited
        r = httpx.get(f"{C}/v1/search", params={"q": "quuxzeph"}, timeout=60)
        assert [x["note_id"] for x in r.json()["items"]][:1] == ["s2"]
        left = [p.name for p in (ws / "search.run").iterdir()]
        assert len(left) == 1 and left[0] not in copies  # ... until the next start removes it
    finally:
        for p in (a, b, c):
            if p is not None:
                stop_server(p)


def test_several_workers_need_redis(tmp_path):
    r = subprocess.run(["notefeed", "serve", "--workspace", str(tmp_path / "ws"), "--config", str(MINIMAL),
                        "--workers", "2"], capture_output=True, text=True, timeout=120,
                       env={**__import__("os").environ, "NOTEFEED_API_TOKEN": TOKEN})
    assert r.returncode == 2 and "online.backend: redis" in r.stderr


def test_a_worker_killed_mid_load_loses_no_acknowledged_event(redis_url, redis_client, tmp_path):
    import json
    import signal

    from tests.procs import kill9_while_writing

    ws = tmp_path / "ws"
    cfg = _config(tmp_path, redis_url, "w3")
    pa, pb = free_port(), free_port()
    a = start_server(ws, pa, ["--config", str(cfg)], timeout=120)
    b = start_server(ws, pb, ["--config", str(cfg)], timeout=120)
    acked: list[str] = []
    try:
        for i in range(10):
            httpx.post(f"http://127.0.0.1:{pa}/v1/notes", json={"note_id": f"p{i}", "author_id": "a"}, headers=H)
        _until(lambda: httpx.get(f"http://127.0.0.1:{pb}/healthz").json()["notes"] == 10)

        def write(stop) -> None:  # alternate the two workers, as a load balancer would
            seq = 0
            clients = [httpx.Client(base_url=f"http://127.0.0.1:{p}", timeout=10) for p in (pa, pb)]
            while not stop.is_set() and seq < 100_000:
                seq += 1
                batch = [{"user_id": f"u{seq % 9}", "note_id": f"p{(seq + j) % 10}", "ts": seq, "type": "click",
                          "event_id": f"e{seq}.{j}"} for j in range(5)]
                try:
                    r = clients[seq % 2].post("/v1/events", json={"events": batch}, headers=H)
                except httpx.HTTPError:
                    continue  # that worker died: not acknowledged; the other goes on
                if r.status_code == 200 and r.json()["accepted"] == 5:
                    acked.extend(e["event_id"] for e in batch)

        kill9_while_writing(a, write, after_s=2.0)
        assert a.returncode == -signal.SIGKILL
        assert httpx.get(f"http://127.0.0.1:{pb}/healthz").status_code == 200  # the survivor serves on
    finally:
        stop_server(a)
        stop_server(b)
    assert len(acked) >= 50, len(acked)
    stored = {json.loads(f["e"])["event_id"] for _, f in redis_client.xrange("w3:events")}
    assert not set(acked) - stored, f"{len(set(acked) - stored)} acknowledged events lost"


def test_worker_scaling_bench_serves_one_then_two_workers_behind_one_port(redis_url, tmp_path):
    from notefeed.data.store import Workspace
    from notefeed.serve.bench_online import run_worker_scaling
    from tests.recall.conftest import make_community

    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(make_community(n_users=40, n_notes=60, per_user=5))
    out = run_worker_scaling(ws, requests_per_worker=10, concurrency_per_worker=1, redis_url=redis_url,
                             config=MINIMAL)
    assert [r["workers"] for r in out["runs"]] == [1, 2] and out["notes"] == 60
    for r in out["runs"]:
        d = r["pipelines"]["default"]
        assert d["errors"] == 0 and d["requests"] == 10 * r["workers"] and r["concurrency"] == r["workers"]
        assert r["served"]["notes"] == 60
    assert out["p99_ratio"] > 0 and (ws / "notefeed.duckdb").exists()  # served copies, the original untouched


def test_worker_scaling_open_loop_holds_the_rate_per_worker(redis_url, tmp_path):
    """--rate: Poisson arrivals at N x rate requests/s, whatever the server's pace, so the run
    takes about requests / rate (a closed loop with one thread finishes far sooner here)."""
    from notefeed.data.store import Workspace
    from notefeed.serve.bench_online import run_worker_scaling
    from tests.recall.conftest import make_community

    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(make_community(n_users=40, n_notes=60, per_user=5))
    cores = sorted(os.sched_getaffinity(0))
    pin = len(cores) >= 2  # each worker on a core of its own, where there are two
    out = run_worker_scaling(ws, requests_per_worker=15, concurrency_per_worker=3, redis_url=redis_url,
                             config=MINIMAL, rates_per_worker=(20.0,), warmup_per_worker=3, pin=pin)
    assert out["load"].startswith("open loop") and [r["workers"] for r in out["runs"]] == [1, 2]
    assert out["warmup_per_worker"] == 3 and out["pinned"] is pin
    for r in out["runs"]:
        n = r["workers"]
        if pin:
            assert r["served"]["worker_cores"] == cores[:n]
        assert r["workers_cpu_ms_per_request"] > 0
        assert r["rate_per_worker"] == 20.0 and r["open_loop"]["rate_rps"] == 20.0 * n
        assert r["pipelines"]["default"]["requests"] == 15 * n and r["pipelines"]["default"]["errors"] == 0
        assert r["wall_s"] > 0.5 * (30 * n) / (20.0 * n)  # 30n arrivals at 20n/s: about 1.5 s
    assert set(out["by_rate_per_worker"]) == {"20/s"} and out["by_rate_per_worker"]["20/s"]["p99_ratio"] > 0


def test_pin_puts_every_thread_of_a_process_on_one_core():
    from notefeed.serve.bench_online import _pin

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("one core: nothing to pin apart")
    child = subprocess.Popen([sys.executable, "-c", "import threading, time\n"
                              "ts = [threading.Thread(target=time.sleep, args=(30,)) for _ in range(3)]\n"
                              "[t.start() for t in ts]\nprint('up', flush=True)\ntime.sleep(30)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "up"
        assert _pin(child.pid, cores[1]) == cores[1]
        tids = [int(t) for t in os.listdir(f"/proc/{child.pid}/task")]
        assert len(tids) == 4 and all(os.sched_getaffinity(t) == {cores[1]} for t in tids)
    finally:
        child.kill()
        child.wait()


def test_worker_scaling_flag_errors_are_one_line(tmp_path):
    from typer.testing import CliRunner

    from notefeed.cli import app

    r = CliRunner().invoke(app, ["bench", "workers", "--scaling"])
    assert r.exit_code == 2 and "--workspace" in r.output
    r = CliRunner().invoke(app, ["bench", "workers", "--workspace", str(tmp_path)])
    assert r.exit_code == 2 and "only with --scaling" in r.output
    r = CliRunner().invoke(app, ["bench", "workers", "--pin"])
    assert r.exit_code == 2 and "only with --scaling" in r.output
    r = CliRunner().invoke(app, ["bench", "workers", "--scaling", "--workspace", str(tmp_path / "none")])
    assert r.exit_code == 2 and "holds no workspace" in r.output
    for bad in ("fast", "10,0"):
        r = CliRunner().invoke(app, ["bench", "workers", "--scaling", "--workspace", str(tmp_path), "--rate", bad])
        assert r.exit_code == 2 and "--rate" in r.output


def test_workers_load_the_workspace_read_only_and_wait_out_a_writer(tmp_path):
    """`serve --workers N` starts N workers that load the workspace at the same time: read-only
    opens do not lock each other out, and a worker waits while another process writes (a
    read-write open by one used to kill the other at start-up, leaving one worker serving)."""
    import sys

    from notefeed.data.dataset import DataError
    from notefeed.data.store import Workspace
    from notefeed.serve.cli import load_workspace_dataset
    from tests.recall.conftest import make_community

    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(make_community(n_users=20, n_notes=30, per_user=4))
    hold = ("import sys, time; from notefeed.data.store import Workspace\n"
            "w = Workspace.open(sys.argv[1], read_only=sys.argv[2] == 'ro'); print('held', flush=True)\n"
            "time.sleep(float(sys.argv[3])); w.close()")

    def holder(mode: str, seconds: float) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", hold, str(ws), mode, str(seconds)], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "held"
        return p

    p = holder("ro", 5.0)  # another worker reading: no wait needed
    try:
        assert len(load_workspace_dataset(ws, read_only=True).notes) == 30
    finally:
        p.kill()
        p.wait()
    p = holder("rw", 1.5)  # a writer: read-only opens fail until it lets go...
    try:
        with pytest.raises(DataError, match="locked by another process"):
            load_workspace_dataset(ws, read_only=True)
        t0 = time.monotonic()
        assert len(load_workspace_dataset(ws, read_only=True, lock_wait_s=30.0).notes) == 30  # ...or wait
        assert time.monotonic() - t0 < 25
    finally:
        p.kill()
        p.wait()
