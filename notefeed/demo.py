"""``notefeed demo``: generate a community, ``notefeed train`` it, serve it, show what it does.

Steps, each timed and printed:

1. generate a simulated community (ground-truth users, creators, notes) and its logged history;
2. store it in a DuckDB workspace;
3. train exactly as ``notefeed train`` does (:func:`~notefeed.models.train.train_workspace`):
   every component the serving config names, stored as a promoted version in
   ``WORKSPACE/models/``; for a demo of a few minutes on two cores the sequence model's
   training is capped in time (printed; ``--rank-users`` can also shrink the rankers'
   sample, at a cost: docs/results/demo/);
4. serve that version as ``notefeed serve`` does
   (:func:`~notefeed.serve.versions.engine_from_store`), HTTP API on a free loopback port;
5. a tour of the API: an explained feed, a click that changes the next feed, a published note
   that is recallable at once, related notes, the Prometheus metrics;
6. a closed-loop comparison in the simulator: the trained pipeline against popularity and
   random, side by side, on engagement and small-creator exposure.

Everything the API tour writes (events, the published note, the cold-start pool, the write
token) stays in the workspace: ``notefeed serve --workspace WORKSPACE`` afterwards serves the
same version with them. The closed loop runs on its own engine in a temporary folder (the
same trained components), so the simulator's events never enter the workspace.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from notefeed.models.train import MAX_RANK_USERS

__all__ = ["DemoOptions", "run_demo", "demo_config", "SEQUENCE_CHANNEL"]

#: the channel whose training the demo caps in time
SEQUENCE_CHANNEL = "sequence/sasrec"
#: ``notefeed train``'s sample of users for ranker training (train_workspace's default)
TRAIN_RANK_USERS = MAX_RANK_USERS
_STEPS = 6


@dataclass
class DemoOptions:
    workspace: Path
    preset: str = "demo"
    seed: int = 0
    loop_steps: int = 10
    loop_requests: int = 40
    page_size: int = 10
    #: serving config file (``None``: the defaults, configs/default.yaml)
    config: Path | None = None
    #: wall-clock cap on the sequence model's training (its ``max_time_s``) unless the config
    #: sets one; ``None``: no cap. ``notefeed train`` itself trains it fully.
    sequence_max_s: float | None = 60.0
    #: users whose candidate sets train the rankers, as ``notefeed train`` (up to 8,000). 500
    #: saved about 15 s on ``demo`` but left the rankers 26 validation groups, and the trained
    #: pipeline's closed-loop CTR fell below random's (docs/results/demo/)
    rank_users: int = TRAIN_RANK_USERS


def demo_config(opts: DemoOptions) -> tuple[Any, list[str]]:
    """The serving config the demo trains and serves, and what it changed for the demo."""
    from notefeed.serve.config import load_config

    cfg = load_config(opts.config)
    notes: list[str] = []
    if opts.sequence_max_s is None:
        return cfg, notes
    chans = [c.model_dump() for c in cfg.recall.channels]
    for i, c in enumerate(chans):
        if c["name"] == SEQUENCE_CHANNEL and "max_time_s" not in c["params"]:
            c["params"] = {**c["params"], "max_time_s": float(opts.sequence_max_s)}
            notes.append(f"{SEQUENCE_CHANNEL} training capped at {opts.sequence_max_s:g} s for the demo "
                         f"(recall.channels.{i}.params.max_time_s; `notefeed train` trains it fully)")
    return (cfg.with_overrides(recall={"channels": chans}) if notes else cfg), notes


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


class _Heartbeat:
    """Prints ``... still <what> (N s)`` every ``every_s`` seconds while a long step runs and
    no progress bar can show (output not a terminal: tqdm bars are off there)."""

    def __init__(self, con: Console, what: str, every_s: float = 15.0) -> None:
        self.con, self.what, self.every_s = con, what, every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _Heartbeat:
        if not (self.con.is_terminal and sys.stderr.isatty()):
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.wait(self.every_s):
            self.con.print(f"[dim]... still {self.what} ({time.monotonic() - t0:.0f} s)[/dim]")

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _clear_serving_state(workspace: Path) -> list[str]:
    """Remove what a previous serve of a replaced workspace left (event log, note log, relation
    log, cold-start pool, live config change): it refers to the old community. Model versions stay (``models list``)."""
    from notefeed.serve.coldstart import STATE_FILE
    from notefeed.serve.hotconfig import LIVE_FILE
    from notefeed.serve.relations import RELATIONS_FILE

    gone = []
    for name in ("events.sqlite", "notes.sqlite", RELATIONS_FILE, STATE_FILE, LIVE_FILE):
        for p in (workspace / name, workspace / f"{name}-wal", workspace / f"{name}-shm"):
            if p.is_file():
                p.unlink()
                gone.append(p.name)
    return gone


def run_demo(opts: DemoOptions, console: Console | None = None) -> dict[str, Any]:
    """Run the demo; return a summary dict (also what ``--json`` writes)."""
    import httpx

    from notefeed.data.store import Workspace
    from notefeed.models.store import ModelStore
    from notefeed.models.train import train_workspace
    from notefeed.serve.app import create_app
    from notefeed.serve.cli import load_workspace_dataset, resolve_token
    from notefeed.serve.simpolicy import EnginePolicy
    from notefeed.serve.versions import engine_from_store
    from notefeed.sim import SimEnvironment, generate, run_closed_loop
    from notefeed.sim.policies import make_policy

    con = console or Console()
    summary: dict[str, Any] = {"preset": opts.preset, "seed": opts.seed, "workspace": str(opts.workspace)}
    t_start = time.perf_counter()
    cfg, cfg_notes = demo_config(opts)  # a bad --config fails here, before minutes of work

    def step(n: int, text: str) -> float:
        con.rule(f"[bold]{n}/{_STEPS}[/bold] {text}")
        return time.perf_counter()

    def took(t0: float) -> str:
        return f"[dim]({time.perf_counter() - t0:.1f} s)[/dim]"

    # 1. community -----------------------------------------------------------------
    t0 = step(1, f"simulated community (preset '{opts.preset}', seed {opts.seed})")
    community = generate(opts.preset, seed=opts.seed)
    hist = community.history()
    st = hist.stats()
    summary["community"] = {k: st[k] for k in ("users", "notes", "creators", "events", "small_creator_note_share")}
    summary["community"]["seconds"] = round(time.perf_counter() - t0, 2)
    con.print(f"{st['users']:,} users, {st['creators']:,} creators, {st['notes']:,} notes, "
              f"{st['events']:,} logged events over {st.get('span_days', 0):.0f} days; "
              f"{st['small_creator_note_share']:.0%} of notes by creators under 1,000 followers {took(t0)}")

    # 2. store ---------------------------------------------------------------------
    t0 = step(2, f"workspace {opts.workspace}")
    cleared = _clear_serving_state(opts.workspace)
    if cleared:
        con.print(f"cleared the previous serving state: {', '.join(cleared)}")
    with Workspace.open(opts.workspace) as ws:
        ws.save_dataset(hist, replace=True)
        counts = ws.counts()
    ds = load_workspace_dataset(opts.workspace)  # what `notefeed train` and `serve` read
    con.print(f"stored in DuckDB: {counts} {took(t0)}")

    # 3. train (= notefeed train) ------------------------------------------------------------
    t0 = step(3, f"train: `notefeed train --workspace {opts.workspace}`")
    if opts.rank_users < TRAIN_RANK_USERS:
        cfg_notes.append(f"rankers trained on the candidate sets of at most {opts.rank_users:,} users "
                         f"(`notefeed train`: {TRAIN_RANK_USERS:,})")
    for note in cfg_notes:
        con.print(f"[yellow]demo setting:[/yellow] {note}")
    with _Heartbeat(con, "training"):
        version = train_workspace(opts.workspace, cfg, seed=opts.seed, progress=True, ds=ds,
                                  log=lambda msg: con.print(f"  {msg}", highlight=False),
                                  max_rank_users=opts.rank_users)
    manifest = ModelStore(opts.workspace).manifest(version)
    summary["train_seconds"] = round(time.perf_counter() - t0, 2)
    summary["model_version"] = version
    summary["train_metrics"] = manifest.get("metrics", {})
    summary["demo_settings"] = cfg_notes
    con.print(f"version {version}: {', '.join(sorted(manifest.get('components', {})))}")
    for place, ms in sorted(summary["train_metrics"].items()):
        shown = ", ".join(f"{k} {v:.3f}" for k, v in ms.items()
                          if isinstance(v, float) and k.startswith("valid"))[:160]
        if shown:
            con.print(f"  {place}: {shown}")
    con.print(f"trained in {summary['train_seconds']} s")

    # 4. serve (= notefeed serve) --------------------------------------------------------------
    t0 = step(4, f"serve: `notefeed serve --workspace {opts.workspace}` on loopback")
    token, token_from = resolve_token(cfg.api.token, opts.workspace)
    engine = engine_from_store(ds, cfg.with_overrides(api={"token": token}), opts.workspace)
    summary["served_version"] = engine.model_version
    summary["fallback"] = list(engine.served.fallback)
    if engine.served.fallback:
        con.print("[yellow]serving with fallbacks:[/yellow] " + "; ".join(engine.served.fallback))
    con.print(f"model version {engine.model_version}; {engine.replayed:,} events replayed from the workspace log; "
              f"write token in {token_from}")
    server = _Server(create_app(engine))
    try:
        base = server.start()
        con.print(f"listening on {base} (OpenAPI docs at {base}/docs) {took(t0)}")
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, timeout=30.0) as http:
            summary["api"] = _api_tour(http, auth, ds, engine, con)
    finally:
        server.stop()
        engine.close()  # saves the cold-start pool into the workspace
    fitted = engine.fitted

    # 6. closed loop -----------------------------------------------------------------------------
    t0 = step(6, f"closed loop in the simulator: {opts.loop_steps} steps x {opts.loop_requests} requests")
    con.print(f"the pipeline serves version {version} on its own engine (simulated clock, temporary folder)")
    rows = []
    for name in ("pipeline", "popular", "random"):
        env = SimEnvironment(community, seed=opts.seed + 1, dataset=hist)
        policy: Any = (EnginePolicy(config=cfg, fitted=fitted, model_version=version, seed=opts.seed)
                       if name == "pipeline" else make_policy(name, seed=opts.seed))
        try:
            r = run_closed_loop(env, policy, steps=opts.loop_steps, requests_per_step=opts.loop_requests,
                                page_size=opts.page_size)
        finally:
            close = getattr(policy, "close", None)
            if close is not None:
                close()
        rows.append({k: r[k] for k in ("policy", "impressions", "ctr", "like_rate", "collect_rate",
                                       "small_creator_share", "creator_gini", "diversity",
                                       "interest_coverage")})
    summary["closed_loop"] = rows
    _print_loop(rows, con)
    con.print(took(t0))
    summary["total_seconds"] = round(time.perf_counter() - t_start, 1)
    from notefeed.eval.timing import machine_info

    summary["machine_info"] = machine_info()  # where the seconds above were measured (CPU, commit)
    con.rule()
    default_cfg = opts.config is None
    again = f"notefeed serve --workspace {opts.workspace}" + ("" if default_cfg else f" --config {opts.config}")
    con.print(f"demo finished in {summary['total_seconds']} s. [bold]{again}[/bold] serves version {version} "
              "again, with the events and the note published above")
    return summary


def _api_tour(http: Any, auth: dict[str, str], ds: Any, engine: Any, con: Console) -> dict[str, Any]:
    import numpy as np

    out: dict[str, Any] = {}
    con.rule(f"[bold]5/{_STEPS}[/bold] API tour")
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
    for col in ("pos", "note", "category", "channels", "coarse", "fine", "fused"):
        t.add_column(col)
    for row, item in zip(trace["items"][:5], body["items"][:5], strict=False):
        fine = row.get("fine_scores") or {}
        # a listwise ranker (rank/ltr) answers one score; a multi-task one p(click) and more
        fine_v = fine.get("score", fine.get("click", float("nan")))
        t.add_row(str(row["position"]), row.get("note_id", ""), str(item.get("category", "")),
                  ", ".join(row["channels"]), f"{row.get('coarse_score', float('nan')):.3f}",
                  f"{fine_v:.3f}", f"{row.get('fused_score', float('nan')):.3f}")
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
    # the active user follows the new creator (a follow is posted on one of their notes): from
    # the next request social/follow recalls that creator's notes, this one included
    fol = {"user_id": user, "note_id": note["note_id"], "ts": int(time.time()), "type": "follow"}
    http.post("/v1/events", json={"events": [fol]}, headers=auth).raise_for_status()
    followed = http.get(f"/v1/users/{user}").json().get("followed", [])
    social = [s.component for s in engine.pipelines["default"].sources if s.name == "social/follow"]
    # the note followed on is seen now, so recall skips it: the creator's next note shows the follow
    second = {**note, "note_id": "demo-new-note-2", "title": "back on the trail", "created_at": int(time.time()) + 1}
    http.post("/v1/notes", json=second, headers=auth).raise_for_status()
    item2 = engine.catalog.item_of(second["note_id"])
    recalled = bool(social) and item2 in social[0].recall(engine.context(user), 50).items.tolist()
    out["followed"] = followed
    out["follow_recalls_new_note"] = recalled
    con.print(f"POST /v1/events (a follow by {user} on {note['note_id']}): GET /v1/users/{user} followed={followed}; "
              f"{second['note_id']}, published next by {note['author_id']}, is "
              f"{'recalled at once by social/follow for ' + user if recalled else 'NOT recalled by social/follow'}")
    # a moderator takes the second note down: gone from every feed and related list at once
    r = http.delete(f"/v1/notes/{second['note_id']}", params={"reason": "demo takedown"}, headers=auth)
    r.raise_for_status()
    _, probe = engine.feed(user, 10, probe=True)  # the candidates past the filters (builtin/removed first)
    gone = item2 not in dict(probe.snapshots)["recall"].tolist()
    rel_status = http.get(f"/v1/notes/{second['note_id']}/related").status_code
    out["removed_note_gone"] = bool(gone and rel_status == 410)
    con.print(f"DELETE /v1/notes/{second['note_id']} -> {r.status_code}: among {user}'s candidates "
              f"{'no more' if gone else 'STILL'}; its related list answers {rel_status}")
    # ... and restores it (an appeal granted): back among the candidates at once
    r = http.post(f"/v1/notes/{second['note_id']}/restore", params={"reason": "demo appeal"}, headers=auth)
    r.raise_for_status()
    _, probe = engine.feed(user, 10, probe=True)
    back = item2 in dict(probe.snapshots)["recall"].tolist()
    out["restored_note_back"] = bool(back and http.get(f"/v1/notes/{second['note_id']}/related").status_code == 200)
    con.print(f"POST /v1/notes/{second['note_id']}/restore -> {r.status_code}: among {user}'s candidates "
              f"{'again' if back else 'STILL NOT'}")
    # the creator edits their first note: every worker's catalogue and search have the new fields
    r = http.patch(f"/v1/notes/{note['note_id']}", json={"title": "my first hiking trip, with photos",
                                                          "tags": ["travel", "hiking", "photo"]}, headers=auth)
    r.raise_for_status()
    out["edited"] = r.json()["changed"]
    con.print(f"PATCH /v1/notes/{note['note_id']} -> {r.status_code}: changed {', '.join(out['edited'])}; "
              f"title now {r.json()['note']['title']!r}")
    # a user deletes their account: their events and follows leave the serving logs and every
    # worker forgets them; the next `notefeed train` sync deletes them from the store
    leaving = "demo-leaving-user"
    like = {"user_id": leaving, "note_id": top, "ts": int(time.time()), "type": "like"}
    http.post("/v1/events", json={"events": [like]}, headers=auth).raise_for_status()
    r = http.delete(f"/v1/users/{leaving}", headers=auth)
    r.raise_for_status()
    out["erased"] = r.json()["removed"]
    known = http.get(f"/v1/users/{leaving}").status_code
    con.print(f"DELETE /v1/users/{leaving} -> {r.status_code}: removed from the logs "
              + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in out["erased"].items())
              + f"; GET /v1/users/{leaving} -> {known}")
    rel = http.get(f"/v1/notes/{top}/related", params={"n": 5})
    rel.raise_for_status()
    rel_items = rel.json()["items"]
    same_cat = [i.get("category") == body["items"][0].get("category") for i in rel_items]
    out["related"] = [i["note_id"] for i in rel_items]
    con.print(f"GET /v1/notes/{top}/related (Swing/ItemCF neighbours blended with learned-vector cosine): "
              + ", ".join(f"{i['note_id']} ({i.get('category', '')})" for i in rel_items)
              + f"; {sum(same_cat)}/{len(same_cat)} in its category")
    new_rel = http.get(f"/v1/notes/{note['note_id']}/related", params={"n": 3}).json()["items"]
    con.print(f"related notes of the note just published (no engagement, not in the trained vectors: "
              f"catalogue category/author fallback): {', '.join(i['note_id'] for i in new_rel)}")
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
