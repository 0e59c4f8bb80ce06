"""Commands of the online stage: ``notefeed online events`` (inspect the durable event log)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

__all__ = ["register"]

online_app = typer.Typer(help="Online event log and per-user state.", no_args_is_help=True)


@online_app.command("events")
def events_cmd(
    workspace: Path = typer.Option(..., "--workspace", help="workspace directory (events.sqlite inside)"),
    user: str | None = typer.Option(None, "--user", help="also show this user's state rebuilt from the log"),
    tail: int = typer.Option(5, "--tail", min=0, max=10_000, help="print the last N events"),
) -> None:
    """Count the accepted events in WORKSPACE/events.sqlite; optionally replay one user's state."""
    from notefeed.online.bus import SqliteEventBus
    from notefeed.online.events import StateUpdate
    from notefeed.online.state import MemoryOnlineState

    path = workspace / "events.sqlite"
    if not path.exists():
        typer.echo(f"no event log at {path}", err=True)
        raise typer.Exit(1)
    bus = SqliteEventBus(path)
    try:
        recs = list(bus.replay())
    finally:
        bus.close()
    by_type: dict[str, int] = {}
    for r in recs:
        by_type[r.type] = by_type.get(r.type, 0) + 1
    out: dict[str, object] = {"events": len(recs), "by_type": by_type,
                              "last": [r.to_dict() for r in recs[-tail:]] if tail else []}
    if user is not None:
        # categories are not in the log (the catalogue has them): counters show as ""
        st = MemoryOnlineState()
        st.apply([StateUpdate(r.user_id, r.note_id, r.type, "", r.received_at) for r in recs if r.user_id == user])
        out["user"] = st.snapshot(user).to_dict()
    typer.echo(json.dumps(out, indent=2))


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this stage's commands to ``notefeed`` and ``notefeed bench``."""
    app.add_typer(online_app, name="online")
