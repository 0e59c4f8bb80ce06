"""``notefeed demo``: build a community, train every stage, serve it, and show what it does.

Steps, each timed and printed:

1. generate a simulated community (ground-truth users, creators, notes) and its logged history;
2. store it in a DuckDB workspace;
3. build the serving engine: fit the recall channels and train the multi-task fine ranker;
4. start the HTTP API on a free loopback port (uvicorn, in this process);
5. a tour of the API: an explained feed, a click that changes the next feed, a published note
   that is recallable at once, the Prometheus metrics;
6. a closed-loop comparison in the simulator: the full pipeline against popularity and random,
   side by side, on engagement and small-creator exposure.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["DemoOptions", "run_demo"]


@dataclass
class DemoOptions:
    workspace: Path
    preset: str = "demo"
    seed: int = 0
    loop_steps: int = 12
    loop_requests: int = 60
    page_size: int = 10
    fine_scorer: str | None = "rank/cgc"
    fine_params: dict[str, Any] = field(default_factory=lambda: {"epochs": 1, "max_samples": 120_000})


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server:
    """uvicorn on 127.0.0.1 in a background thread; stopped by :meth:`stop`."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self, timeout_s: float = 30.0) -> str:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("demo: the HTTP server did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def run_demo(opts: DemoOptions, console: Console | None = None) -> dict[str, Any]:
    """Run the demo; return a summary dict (also what ``--json`` writes)."""
    import httpx

    from notefeed.data.store import Workspace
    from notefeed.serve.app import create_app
    from notefeed.serve.config import ServeConfig
    from notefeed.serve.engine import Engine
    from notefeed.serve.simpolicy import EnginePolicy
    from notefeed.sim import SimEnvironment, generate, run_closed_loop
    from notefeed.sim.policies import make_policy

    con = console or Console()
    summary: dict[str, Any] = {"preset": opts.preset, "seed": opts.seed, "workspace": str(opts.workspace)}
    t_start = time.perf_counter()

    def step(n: int, text: str) -> float:
        con.rule(f"[bold]{n}/6[/bold] {text}")
        return time.perf_counter()

    # 1. community -----------------------------------------------------------------
    t0 = step(1, f"simulated community (preset '{opts.preset}', seed {opts.seed})")
    community = generate(opts.preset, seed=opts.seed)
    ds = community.history()
    st = ds.stats()
    summary["community"] = {k: st[k] for k in ("users", "notes", "creators", "events", "small_creator_note_share")}
    summary["community"]["seconds"] = round(time.perf_counter() - t0, 2)
    con.print(f"{st['users']:,} users, {st['creators']:,} creators, {st['notes']:,} notes, "
              f"{st['events']:,} logged events over {st.get('span_days', 0):.0f} days; "
              f"{st['small_creator_note_share']:.0%} of notes by creators under 1,000 followers "
              f"[dim]({summary['community']['seconds']} s)[/dim]")

    # 2. store ---------------------------------------------------------------------
    t0 = step(2, f"workspace {opts.workspace}")
    with Workspace.open(opts.workspace) as ws:
        ws.save_dataset(ds, replace=True)
        counts = ws.counts()
    con.print(f"stored in DuckDB: {counts} [dim]({time.perf_counter() - t0:.1f} s)[/dim]")

    # 3. engine: recall channels + fine ranker ------------------------------------------
    t0 = step(3, "train: recall channels and the multi-task fine ranker")
    token = secrets.token_urlsafe(16)
    cfg = ServeConfig().with_overrides(api={"token": token})
    if opts.fine_scorer:
        cfg = cfg.with_overrides(fine={"scorer": opts.fine_scorer, "params": dict(opts.fine_params)})
    engine = Engine(ds, cfg, opts.workspace / "serving")
    channels = [c.name for c in cfg.recall.channels]
    summary["train_seconds"] = round(time.perf_counter() - t0, 2)
    con.print(f"recall channels: {', '.join(channels)}")
    con.print(f"fine ranker: {opts.fine_scorer or 'builtin/linear'}; re-ranker: {cfg.rerank.name} "
              f"[dim]({summary['train_seconds']} s)[/dim]")

    # 4. serve ---------------------------------------------------------------------------
    step(4, "serve the HTTP API on loopback")
    server = _Server(create_app(engine))
    base = server.start()
    con.print(f"listening on {base} (OpenAPI docs at {base}/docs)")
    auth = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=base, timeout=30.0) as http:
            summary["api"] = _api_tour(http, auth, ds, engine, con)
        # 6. closed loop ---------------------------------------------------------------------
        step(6, f"closed loop in the simulator: {opts.loop_steps} steps x {opts.loop_requests} requests")
        rows = []
        for name in ("pipeline", "popular", "random"):
            env = SimEnvironment(community, seed=opts.seed + 1, dataset=ds)
            policy = EnginePolicy(engine=engine) if name == "pipeline" else make_policy(name, seed=opts.seed)
            r = run_closed_loop(env, policy, steps=opts.loop_steps, requests_per_step=opts.loop_requests,
                                page_size=opts.page_size)
            rows.append({k: r[k] for k in ("policy", "impressions", "ctr", "like_rate", "collect_rate",
                                           "small_creator_share", "creator_gini", "diversity",
                                           "interest_coverage")})
        summary["closed_loop"] = rows
        _print_loop(rows, con)
    finally:
        server.stop()
        engine.close()
    summary["total_seconds"] = round(time.perf_counter() - t_start, 1)
    con.rule()
    con.print(f"demo finished in {summary['total_seconds']} s. Serve this workspace again with "
              f"[bold]notefeed serve --workspace {opts.workspace}[/bold]")
    return summary


def _api_tour(http: Any, auth: dict[str, str], ds: Any, engine: Any, con: Console) -> dict[str, Any]:
    import numpy as np

    out: dict[str, Any] = {}
    con.rule("[bold]5/6[/bold] API tour")
    r = http.get("/healthz")
    r.raise_for_status()
    out["healthz"] = r.json()
    # the most active user, so every channel has history to work with
    user = str(ds.users["user_id"].iloc[int(ds.events["user"].value_counts().index[0])])
    feed = http.get("/v1/feed", params={"user_id": user, "n": 10, "explain": "true"})
    feed.raise_for_status()
    body = feed.json()
    trace = body["trace"]
    t = Table(title=f"GET /v1/feed?user_id={user}&explain=true (first 5 of {len(body['items'])})")
    for col in ("pos", "note", "category", "channels", "p(click)", "fused"):
        t.add_column(col)
    for row, item in zip(trace["items"][:5], body["items"][:5], strict=False):
        t.add_row(str(row["position"]), row.get("note_id", ""), str(item.get("category", "")),
                  ", ".join(row["channels"]), f"{row['fine_scores'].get('click', float('nan')):.3f}",
                  f"{row.get('fused_score', float('nan')):.3f}")
    con.print(t)
    stages = ", ".join(f"{s['name']} {s['ms']:.1f} ms" for s in trace["stages"])
    con.print(f"stages: {stages}")
    out["feed_ms"] = round(trace["total_ms"], 2)
    idx = np.array([engine.catalog.item_of(i["note_id"]) for i in body["items"]], np.int64)
    out["feed_small_creator_share"] = float(engine.catalog.small_creator(idx).mean()) if len(idx) else 0.0
    con.print(f"{out['feed_small_creator_share']:.0%} of this page from creators under 1,000 followers")

    # a click on the top note: the next feed must not show it again
    top = body["items"][0]["note_id"]
    ev = {"user_id": user, "note_id": top, "ts": int(time.time()), "type": "click", "dwell_s": 30.0}
    t0 = time.perf_counter()
    r = http.post("/v1/events", json={"events": [ev, {**ev, "note_id": "no-such-note"}]}, headers=auth)
    r.raise_for_status()
    after = http.get("/v1/feed", params={"user_id": user, "n": 10}).json()
    lag_ms = (time.perf_counter() - t0) * 1e3
    gone = top not in [i["note_id"] for i in after["items"]]
    out["event_to_feed_ms"] = round(lag_ms, 1)
    out["clicked_note_left_feed"] = gone
    con.print(f"POST /v1/events (a click on {top} + one unknown note): {r.json()}")
    con.print(f"next feed {'no longer shows' if gone else 'STILL SHOWS'} {top}: event -> new feed in {lag_ms:.0f} ms")

    # publish a note from a small creator: recallable at once through the fresh pool
    note = {"note_id": "demo-new-note", "author_id": "demo-new-creator", "title": "my first hiking trip",
            "text": "a day in the mountains", "tags": ["travel", "hiking"], "category": "travel",
            "created_at": int(time.time())}
    r = http.post("/v1/notes", json=note, params={"followers": 12}, headers=auth)
    r.raise_for_status()
    item = engine.catalog.item_of(note["note_id"])
    in_pool = item is not None and item in engine.catalog.fresh
    fresh = http.get("/v1/feed", params={"user_id": "brand-new-user", "n": 20, "explain": "true"}).json()
    hit = [row for row in fresh["trace"]["items"] if row.get("note_id") == note["note_id"]]
    out["published_note_in_fresh_pool"] = bool(in_pool)
    out["published_note_on_cold_start_page"] = bool(hit)
    con.print(f"POST /v1/notes -> {r.status_code}: note {note['note_id']} is item {item}, "
              f"{'in' if in_pool else 'NOT in'} the fresh recall pool at once; a cold-start user's page "
              f"(cold_start={fresh['cold_start']}) {'shows it via ' + ', '.join(hit[0]['channels']) if hit else 'ranks it below the first 20 (no engagement yet)'}")
    bad = http.post("/v1/events", json={"events": [ev]}, headers={"Authorization": "Bearer wrong"})
    con.print(f"a write with a wrong token -> {bad.status_code}")
    metrics = http.get("/metrics").text.splitlines()
    shown = [m for m in metrics if not m.startswith("#") and ("events_accepted_total" in m
                                                               or "events_rejected_total" in m)][:4]
    con.print("GET /metrics: " + "; ".join(shown))
    return out


def _print_loop(rows: list[dict[str, Any]], con: Console) -> None:
    t = Table(title="closed loop: same users, same seed, side by side")
    cols = (("policy", "policy"), ("ctr", "CTR"), ("like_rate", "like"), ("collect_rate", "collect"),
            ("small_creator_share", "small%"), ("creator_gini", "Gini"), ("diversity", "div."),
            ("interest_coverage", "cover"))
    con.print("small% = exposure share of creators under 1,000 followers; Gini = creator-exposure "
              "concentration; div. = topic diversity in a page; cover = share of users' true interests shown")
    for _, header in cols:
        t.add_column(header, no_wrap=True)
    for r in rows:
        t.add_row(*[f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c, _ in cols])
    con.print(t)
