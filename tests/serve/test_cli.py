from __future__ import annotations

import os
import stat
from pathlib import Path

from typer.testing import CliRunner

from notefeed.cli import app
from notefeed.serve.cli import load_workspace_dataset, resolve_token


def test_serve_reports_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("coarse:\n  keep: 0\n")
    r = CliRunner().invoke(app, ["serve", "--workspace", str(tmp_path / "ws"), "--config", str(bad)])
    assert r.exit_code == 2
    assert "coarse.keep" in r.output


def test_token_resolution(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("NOTEFEED_API_TOKEN", raising=False)
    assert resolve_token("configured-token", tmp_path) == ("configured-token", "config")
    tok, src = resolve_token(None, tmp_path)
    assert len(tok) >= 20 and src.endswith("api_token")
    assert stat.S_IMODE(os.stat(tmp_path / "api_token").st_mode) == 0o600
    assert resolve_token(None, tmp_path)[0] == tok  # reused on restart
    monkeypatch.setenv("NOTEFEED_API_TOKEN", "from-env-token")
    assert resolve_token(None, tmp_path) == ("from-env-token", "NOTEFEED_API_TOKEN")


def test_empty_workspace_is_an_empty_community(tmp_path: Path) -> None:
    ds = load_workspace_dataset(tmp_path)
    assert ds.n_items == 0 and ds.n_users == 0


def test_workspace_from_store_is_served(tmp_path: Path) -> None:
    """A workspace written by the store (as `notefeed sim generate` does) loads for serving."""
    from notefeed.data.store import Workspace
    from notefeed.serve.synth import synthetic_community

    ds = synthetic_community(300, n_users=40, n_events=900, seed=5)
    with Workspace.open(tmp_path) as ws:
        ws.save_dataset(ds)
    got = load_workspace_dataset(tmp_path)
    assert got.n_items == 300 and len(got.events) == 900
    assert got.notes["note_id"].tolist() == ds.notes["note_id"].tolist()
