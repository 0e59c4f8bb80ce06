"""Backing up a workspace while it serves, and restoring it (``notefeed backup``, ``notefeed
restore``).

A backup is a folder: a copy of every file of the workspace a restart needs, and
``backup.json`` (when, which code, every file with its size and sha256). It is written into a
hidden temporary folder beside the destination and renamed into place when complete, so a
backup that exists is whole. What is copied, and how each part stays consistent while servers
write:

1. **The store** (``notefeed.duckdb``): opened for writing (waiting for a sync or an import to
   finish, as the sync does), checkpointed and copied while held, so no writer changes it
   meanwhile.
2. **Everything else but the logs**: model versions (each renamed into place whole: a hidden
   folder is one being written and is skipped), the search index (copied under its lock, the
   one its writers take), the event lake's parts and the JSON state files (each renamed into
   place whole by its writer: a file is copied as it was before or after a write) and the
   other files.
3. **The SQLite logs** (events, notes, relations, search log, experiment pages, and any other
   ``*.sqlite``): through SQLite's online backup, each a consistent snapshot. They are copied
   after the store and the cold-start state, so a position those hold (a sync mark, the
   pool's count of events seen) is never past what the copied log holds.
4. **The ads logs** (``ads/*.jsonl``): copied under the ads folder's exclusive lock.

Not copied: lock files, temporary files (a name ending in ``.tmp`` or starting with a dot),
SQLite's ``-wal``/``-shm`` files (the backup API folds them in) and each serving process's own
search-index copy (``search.run/``). With ``online.backend: redis`` the event stream and the
online state live in Redis: back them up with Redis's own persistence; ``notefeed backup``
syncs the stream into the store first (``--config``), so the backup's store holds every event.

A restore checks every file against ``backup.json`` (size and sha256) before it writes
anything, then writes the workspace into a temporary folder renamed into place: it never mixes
a backup with an existing workspace (the destination must not exist or be empty).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from notefeed.data.lake import fsync_path

__all__ = ["backup_workspace", "restore_workspace", "BackupError", "MANIFEST"]

#: the manifest of a backup folder
MANIFEST = "backup.json"
_FORMAT = 1
_STORE = "notefeed.duckdb"


class BackupError(ValueError):
    """A backup or restore that cannot go on; the message names the path or field."""


def _skipped(rel: Path) -> bool:
    """Whether a workspace path is left out of a backup (see the module docstring)."""
    parts = rel.parts
    name = parts[-1]
    return (any(p.startswith(".") for p in parts) or name.endswith((".tmp", ".lock", "-wal", "-shm", ".wal"))
            or parts[0] == "search.run" or parts[0] == MANIFEST)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextmanager
def _building(final: Path, tag: str) -> Iterator[Path]:
    """A hidden temporary folder beside ``final``, renamed to ``final`` (which must not exist
    or be an empty folder) when the block ends, removed when it raises."""
    tmp = final.with_name(f".{final.name}.{tag}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if final.exists():
            final.rmdir()
        os.replace(tmp, final)
        fsync_path(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _copy_sqlite(src: Path, dst: Path) -> None:
    """A consistent snapshot of a live SQLite database (the online backup API)."""
    s = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30.0)
    try:
        d = sqlite3.connect(str(dst))
        try:
            s.backup(d)
            d.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            d.close()
    except sqlite3.DatabaseError as e:
        raise BackupError(f"{src}: cannot read it as SQLite ({e})") from None
    finally:
        s.close()


def backup_workspace(workspace: str | Path, dest: str | Path, lock_wait_s: float = 60.0,
                     progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Copy ``workspace`` into the new folder ``dest`` (see the module docstring); returns the
    manifest written to ``dest/backup.json``."""
    from notefeed.data.store import Workspace
    from notefeed.search.store import folder_lock
    from notefeed.serve.adslots import _logs_lock

    ws, dest = Path(workspace), Path(dest)
    if not ws.is_dir():
        raise BackupError(f"--workspace: {ws} is not a folder")
    if dest.exists():
        raise BackupError(f"--to: {dest} exists already; a backup goes into a new folder")
    if dest.resolve().is_relative_to(ws.resolve()):
        raise BackupError(f"--to: {dest} is inside the workspace")
    say = progress or (lambda _m: None)
    done: set[Path] = set()

    def copied(rel: Path, copy: Callable[[Path, Path], None]) -> None:
        out = tmp / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        copy(ws / rel, out)
        done.add(rel)

    with _building(dest, "tmp") as tmp:
        if (ws / _STORE).exists():  # 1. the store, held so that nothing writes it meanwhile
            say("the store")
            with Workspace.open_waiting(ws, lock_wait_s, create=False) as store:
                store.con.execute("CHECKPOINT")
                copied(Path(_STORE), shutil.copy2)
        files = sorted(p.relative_to(ws) for p in ws.rglob("*") if p.is_file())
        files = [r for r in files if not _skipped(r) and r not in done]
        sqlite = [r for r in files if r.suffix == ".sqlite"]
        ad_logs = [r for r in files if r.parts[0] == "ads" and r.suffix == ".jsonl"]
        logs = set(sqlite) | set(ad_logs)
        rest = [r for r in files if r not in logs]
        search = [r for r in rest if r.parts[0] == "search"]
        say(f"{len(rest)} files (models, search index, lake, state)")
        if search:  # 2. the shared search index under its writers' lock
            with folder_lock(ws / "search"):
                for r in search:
                    if (ws / r).exists():
                        copied(r, shutil.copy2)
        for r in rest:
            if r.parts[0] != "search" and (ws / r).exists():  # a part compacted away meanwhile is gone
                copied(r, shutil.copy2)
        say(f"{len(sqlite)} SQLite logs")
        for r in sqlite:  # 3. the logs, after every position kept elsewhere
            copied(r, _copy_sqlite)
        if ad_logs:  # 4. the ads logs, no append meanwhile
            with _logs_lock(ws / "ads", exclusive=True):
                for r in ad_logs:
                    if (ws / r).exists():
                        copied(r, shutil.copy2)
        from notefeed import __version__

        manifest = {"format": _FORMAT, "created_at": _dt.datetime.now(_dt.UTC).isoformat(),
                    "workspace": str(ws.resolve()), "notefeed": __version__,
                    "files": {str(r): {"size": (tmp / r).stat().st_size, "sha256": _sha256(tmp / r)}
                              for r in sorted(done)}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        for p in [*(tmp / r for r in done), tmp / MANIFEST]:
            fsync_path(p)
    return manifest


def _read_manifest(src: Path) -> dict[str, Any]:
    try:
        m = json.loads((src / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(f"--from: {src} holds no {MANIFEST} (not a notefeed backup)") from None
    except (OSError, ValueError) as e:
        raise BackupError(f"--from: {src / MANIFEST} is unreadable ({e})") from None
    if not isinstance(m, dict) or m.get("format") != _FORMAT or not isinstance(m.get("files"), dict):
        raise BackupError(f"--from: {src / MANIFEST}: field 'format': expected {_FORMAT}, got "
                          f"{m.get('format') if isinstance(m, dict) else m!r}")
    return m


def verify_backup(src: str | Path) -> dict[str, Any]:
    """The manifest of backup ``src`` after every file was checked against it (size, sha256);
    the first that differs or is missing is a :class:`BackupError` naming it."""
    src = Path(src)
    m = _read_manifest(src)
    for rel, want in m["files"].items():
        p = src / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise BackupError(f"--from: {MANIFEST}: file {rel!r} is outside the backup")
        if not p.is_file():
            raise BackupError(f"--from: {p} is missing")
        if p.stat().st_size != want.get("size") or _sha256(p) != want.get("sha256"):
            raise BackupError(f"--from: {p} differs from {MANIFEST} (size or sha256): the backup is damaged")
    return m


def restore_workspace(src: str | Path, workspace: str | Path) -> dict[str, Any]:
    """Restore backup ``src`` as ``workspace`` (a new or empty folder), after checking every
    file; returns the manifest."""
    src, ws = Path(src), Path(workspace)
    if ws.exists() and (not ws.is_dir() or any(ws.iterdir())):
        raise BackupError(f"--workspace: {ws} exists and is not empty; restore into a new folder")
    m = verify_backup(src)
    with _building(ws, "restore") as tmp:  # ``ws`` is new or empty (checked above)
        for rel in m["files"]:
            out = tmp / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, out)
            fsync_path(out)
    return m
