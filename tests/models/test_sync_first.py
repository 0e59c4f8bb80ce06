"""The commands that read the store (`search`, `data lake export`, `llm embed`) sync the
serving logs first, as `notefeed train` does; `--no-sync` reads the store as it is. `search`
adds to its index the notes the store gained since it was written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from notefeed.cli import app
from notefeed.data.store import Workspace
from notefeed.schema import Event, Note
from notefeed.serve.engine import Engine
from tests.serve.conftest import make_config

TS = 1_700_000_000


@pytest.fixture()
def served(tmp_path: Path) -> Path:
    """A workspace whose server published one note (a rare title word) and took 6 clicks."""
    from notefeed.serve.synth import synthetic_community

    ds = synthetic_community(300, n_users=40, n_events=900, seed=3)
    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(ds)
    eng = Engine(ds, make_config(), ws)
    try:
        eng.publish(Note(note_id="live0", author_id="c1", title="zephyrquux lagoon at dawn", category="travel"))
        eng.ingest([Event(user_id=f"fan{k % 3}", note_id="live0", ts=TS + k, type="click") for k in range(6)])
        eng.side_effects.drain()
    finally:
        eng.close()
    return ws


def _said(out: str) -> str:
    return " ".join(out.split())


def test_search_syncs_first_and_indexes_what_the_store_gained(served: Path) -> None:
    r = CliRunner()
    out = r.invoke(app, ["search", "zephyrquux", "--workspace", str(served), "--no-sync"])
    assert out.exit_code == 0, out.output
    assert "live0" not in out.output and (served / "search" / "catalog.json").exists()
    out = r.invoke(app, ["search", "zephyrquux", "--workspace", str(served)])
    assert out.exit_code == 0, out.output
    said = _said(out.output)
    assert "synced the serving logs: 1 notes and 6 events" in said
    assert "indexed 1 notes added to the store since" in said and "live0" in out.output
    out = r.invoke(app, ["search", "zephyrquux", "--workspace", str(served)])  # nothing new, the index kept it
    assert out.exit_code == 0 and "live0" in out.output and "synced" not in out.output and "indexed" not in out.output


def test_a_search_index_of_another_catalogue_is_rebuilt(served: Path) -> None:
    r = CliRunner()
    assert r.invoke(app, ["search", "lagoon", "--workspace", str(served), "--no-sync"]).exit_code == 0
    import dataclasses

    from notefeed.serve.synth import synthetic_community

    other = synthetic_community(200, n_users=20, n_events=300, seed=9)
    other = dataclasses.replace(other, notes=other.notes.assign(note_id=["other" + n for n in other.notes["note_id"]]))
    with Workspace.open(served) as w:  # the workspace replaced by another community
        w.save_dataset(other, replace=True)
    out = r.invoke(app, ["search", "lagoon", "--workspace", str(served), "--no-sync"])
    assert out.exit_code == 0, out.output
    assert "indexes other notes than the store" in _said(out.output)


def test_lake_export_syncs_first(served: Path) -> None:
    r = CliRunner()
    with Workspace.open(served, create=False, read_only=True) as w:
        stored = w.counts()["events"]
    out = r.invoke(app, ["data", "lake", "export", "--workspace", str(served), "--no-sync"])
    assert out.exit_code == 0, out.output
    assert f"exported {stored:,} events" in out.output and "synced" not in out.output
    out = r.invoke(app, ["data", "lake", "export", "--workspace", str(served)])
    assert out.exit_code == 0, out.output
    assert "synced the serving logs: 1 notes and 6 events" in _said(out.output)
    assert "exported 6 events" in out.output


def test_a_torn_log_is_a_one_line_error_naming_no_sync(served: Path) -> None:
    (served / "events.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x07" * 3000)
    for args in (["search", "x"], ["data", "lake", "export"], ["llm", "embed"]):
        out = CliRunner().invoke(app, [*args, "--workspace", str(served)])
        assert out.exit_code in (1, 2) and "--no-sync" in out.output and "Traceback" not in out.output, (args, out.output)


def test_search_indexes_the_edits_the_server_logged(served: Path) -> None:
    """A note edited through the server after the index was written: `notefeed search` finds it
    by its new title and not by its old one, whether the edit was synced into the store or not."""
    r = CliRunner()
    assert r.invoke(app, ["search", "lagoon", "--workspace", str(served)]).exit_code == 0  # the index, synced
    with Workspace.open(served, create=False, read_only=True) as w:
        ds = w.load_dataset()
    eng = Engine(ds, make_config(), served)
    try:
        eng.edit_note("live0", {"title": "quuxzeph reef at noon"})
    finally:
        eng.close()
    for args in (["--no-sync"], []):
        out = r.invoke(app, ["search", "quuxzeph", "--workspace", str(served), "--n", "1", *args])
        assert out.exit_code == 0 and "live0" in out.output, (args, out.output)
        out = r.invoke(app, ["search", "zephyrquux", "--workspace", str(served), *args])
        assert out.exit_code == 0 and "live0" not in out.output, (args, out.output)
    out = r.invoke(app, ["search", "quuxzeph", "--workspace", str(served), "--rebuild", "--n", "1"])
    assert out.exit_code == 0 and "live0" in out.output and "quuxzeph reef" in out.output
