"""Feed pages and searches at once in one process: does a search beside a page slow it, and
would the feed gate (``api.feed_concurrency``) do better if searches went through it too?

The served default pipeline of a trained workspace and its search index (``SearchService``, as
``notefeed serve`` builds them: one BLAS/torch thread), each feed request a page of 20 with
its notes' JSON, each search what ``GET /v1/search`` does for a known user (the user's history,
the hybrid + personalised search, 10 notes' JSON, the query log). Queries: two words of a
random note's title. Clients send their next request as soon as the last is answered.

Arms, alternating twice: ``feed_alone`` (one feed client), ``search_alone`` (one search
client), ``mixed_free`` (one of each, no gate: what the server does now, searches not gated),
``mixed_gated`` (one of each, both through one :class:`notefeed.threads.FifoGate` place).
Latency includes the wait at the gate; CPU is this process's per request (all its threads).

    python3 docs/results/serve/round23/mixed_inprocess.py WORKSPACE [requests]   # -> mixed_inprocess.json

WORKSPACE is copied first (the search index and the query log are written into the copy).
"""
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from notefeed.eval.timing import latency_stats, machine_info
from notefeed.serve.cli import load_workspace_dataset
from notefeed.serve.config import ServeConfig
from notefeed.serve.search import SearchService
from notefeed.serve.versions import engine_from_store
from notefeed.threads import FifoGate, one_thread_for_process

source = Path(sys.argv[1])
per = int(sys.argv[2]) if len(sys.argv) > 2 else 300
tmp = Path(tempfile.mkdtemp(prefix="mixed-"))
workspace = tmp / "ws"
shutil.copytree(source, workspace)
one_thread_for_process()  # as a serving process (the engine then freezes its heap)
ds = load_workspace_dataset(workspace)
eng = engine_from_store(ds, ServeConfig(), workspace)
t0 = time.perf_counter()
svc = SearchService(eng, eager=True)
eng.search = svc
svc.wait()
build_s = time.perf_counter() - t0
pipe = svc.require()
ids = ds.users["user_id"].astype(str).to_numpy()
rng = np.random.default_rng(0)
titles = ds.notes["title"].astype(str).to_numpy()
queries = []
for t in rng.choice(titles, 4000, replace=False):
    words = [w for w in t.split() if w]
    if words:
        queries.append(" ".join(words[:2]))


def page(uid: str) -> None:
    _, res = eng.feed(uid, 20, "default")
    [eng.catalog.note_json(i) for i in res.items.tolist()]


def search(uid: str, q: str) -> None:
    history = eng.context(uid).history
    res = pipe.search(q, 10, history=history)
    items = [eng.catalog.note_json(i) for i in res.items.tolist()]
    svc.record(uid, res.query.text, [x["note_id"] for x in items])


for k in range(50):  # warm-up
    uid = str(rng.choice(ids))
    page(uid)
    search(uid, queries[k])


def run(arm: str) -> dict:
    gate = FifoGate(1 if arm == "mixed_gated" else 0)
    lat: dict[str, list[float]] = {"feed": [], "search": []}
    users = rng.choice(ids, per)
    qs = rng.choice(len(queries), per)

    def feed_client() -> None:
        for uid in users:
            t = time.perf_counter()
            with gate.held():
                page(str(uid))
            lat["feed"].append(time.perf_counter() - t)

    def search_client() -> None:
        for uid, qi in zip(users[::-1], qs, strict=True):
            t = time.perf_counter()
            with gate.held():
                search(str(uid), queries[qi])
            lat["search"].append(time.perf_counter() - t)

    clients = {"feed_alone": [feed_client], "search_alone": [search_client]}.get(arm, [feed_client, search_client])
    c, t = time.process_time(), time.perf_counter()
    ts = [threading.Thread(target=f) for f in clients]
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    wall = time.perf_counter() - t
    done = sum(len(v) for v in lat.values())
    return {"wall_s": wall, "requests": done, "cpu_ms_per_request": (time.process_time() - c) / done * 1e3,
            "requests_per_s": done / wall,
            **{k: latency_stats(v) for k, v in lat.items() if v}}


arms = ("feed_alone", "search_alone", "mixed_free", "mixed_gated")
out = {"workspace": str(source), "notes": int(ds.n_items), "search_build_s": build_s,
       "requests_per_client_and_arm": per, "queries": len(queries), "rounds": [], "machine": machine_info(),
       "command": f"python3 docs/results/serve/round23/mixed_inprocess.py {source} {per}"}
for order in (arms, arms[::-1]):
    res = {}
    for arm in order:
        res[arm] = s = run(arm)
        print(arm, {k: f"p50 {s[k]['median_ms']:.2f} p99 {s[k]['p99_ms']:.2f}" for k in ("feed", "search") if k in s},
              f"cpu {s['cpu_ms_per_request']:.2f} ms/request, {s['requests_per_s']:.0f}/s", flush=True)
    out["rounds"].append(res)
Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
svc.close()
eng.close()
shutil.rmtree(tmp, ignore_errors=True)
