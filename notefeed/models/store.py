"""Versioned model store: ``WS/models/<version>/`` with a manifest, one folder per component.

A version is ``<UTC timestamp>-<short hash>`` (``20250314T120501123Z-3fa9c1``): sorting the
names sorts by creation time. Each version holds ``manifest.json`` (config and its hash, data
snapshot, per-component validation metrics, code version, creation time, components) and one
folder per component, named by its config place (``recall.channels.1/``, ``coarse/``,
``fine/``), written by :func:`~notefeed.models.artifacts.save_component`; a version trained by
``notefeed train`` also holds ``users.json``, the user ids in the order it indexed them
(:meth:`ModelStore.user_ids`: a running server whose users are their first ones can serve it).

The served version is in ``WS/models/promoted.json``: ``{"version": ..., "history": [...]}``,
where history records every promote and rollback; rollback returns to the version promoted
before the current one. Versions are written into a hidden temporary folder and renamed into
place, ``promoted.json`` is replaced atomically, so a crash never leaves a half version or a
half-written pointer.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from notefeed.models.artifacts import ModelError, load_component, save_component

__all__ = ["ModelStore", "VersionInfo", "VersionNotFound", "config_hash", "data_snapshot", "code_version",
           "ids_fingerprint", "git_output"]

MANIFEST = "manifest.json"
PROMOTED = "promoted.json"
USER_IDS = "users.json"
_VERSION_RE = re.compile(r"^[0-9]{8}T[0-9]{9}Z-[0-9a-f]{6}$")
_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class VersionNotFound(ModelError):
    """A well-formed version name that is not in the store."""


def config_hash(config: Any) -> str:
    """sha256 (first 16 hex) of the canonical JSON of ``config`` (a dict or pydantic model)."""
    if hasattr(config, "model_dump"):
        config = config.model_dump(mode="json")
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ids_fingerprint(ids: Any, n: int) -> str:
    """sha256 (first 16 hex) of the first ``n`` ids in order: components address notes and
    users by dense index, so a version serves only a dataset whose ids start the same way."""
    head = ids.iloc[:n].tolist() if hasattr(ids, "iloc") else list(ids[:n])
    # each id's UTF-8 bytes and a NUL, hashed as one string (the same bytes as id by id)
    text = "".join(f"{x}\0" for x in head)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def data_snapshot(ds: Any) -> dict[str, Any]:
    """What a version was trained on (a ``Dataset``): event count and time range, users and
    items with a fingerprint of their ids (checked when the version is served)."""
    ev = ds.events
    n = int(len(ev))
    ts = ev["ts"] if n else None
    return {"name": str(getattr(ds, "name", "")), "n_events": n, "n_users": int(ds.n_users),
            "n_items": int(ds.n_items), "ts_min": int(ts.min()) if n else None,
            "ts_max": int(ts.max()) if n else None,
            "items_sha": ids_fingerprint(ds.notes["note_id"], int(ds.n_items)),
            "users_sha": ids_fingerprint(ds.users["user_id"], int(ds.n_users))}


def git_output(*args: str, timeout: float = 5.0) -> str | None:
    """``git ARGS`` run in the source tree: its output without trailing whitespace, None where git or the
    repository is missing or the command fails."""
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.rstrip() if out.returncode == 0 else None


def code_version() -> dict[str, Any]:
    """``notefeed.__version__`` and the git commit of the source tree when there is one."""
    from notefeed import __version__

    return {"notefeed": __version__, "git_commit": git_output("rev-parse", "HEAD") or None}


@dataclass(frozen=True)
class VersionInfo:
    """One stored version as ``list()`` reports it."""

    version: str
    created_at: str
    promoted: bool
    manifest: dict[str, Any]

    @property
    def n_events(self) -> int | None:
        return (self.manifest.get("data") or {}).get("n_events")

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        return self.manifest.get("metrics") or {}


class ModelStore:
    """The versions under ``WORKSPACE/models``."""

    def __init__(self, workspace: str | Path) -> None:
        self.workspace = Path(workspace)
        self.root = self.workspace / "models"

    # ------------------------------------------------------------------ reading
    def versions(self) -> list[str]:
        """Stored version names, oldest first (hidden and temporary folders skipped)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _VERSION_RE.match(p.name))

    def path(self, version: str) -> Path:
        """The folder of ``version``; :class:`ModelError` for a malformed name,
        :class:`VersionNotFound` (a ``ModelError``) for a well-formed one not in the store."""
        if not isinstance(version, str) or not _VERSION_RE.match(version):
            raise ModelError(f"version {version!r} is not a version name (like 20250314T120501123Z-3fa9c1)")
        p = self.root / version
        if not p.is_dir():
            known = self.versions()
            raise VersionNotFound(f"version {version!r} not found in {self.root}; known: {known[-5:] or 'none'}")
        return p

    def manifest(self, version: str) -> dict[str, Any]:
        mp = self.path(version) / MANIFEST
        try:
            doc = json.loads(mp.read_text())
        except FileNotFoundError:
            raise ModelError(f"{mp}: missing") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelError(f"{mp}: not valid JSON ({e})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("components"), dict):
            raise ModelError(f"{mp}: needs 'components' (an object of config place -> component)")
        return doc

    def list(self) -> list[VersionInfo]:
        """Every version with its manifest, oldest first. A corrupt manifest raises
        :class:`ModelError` naming the file."""
        cur = self.promoted()
        out = []
        for v in self.versions():
            m = self.manifest(v)
            out.append(VersionInfo(v, str(m.get("created_at", "")), v == cur, m))
        return out

    def _pointer(self) -> dict[str, Any]:
        p = self.root / PROMOTED
        if not p.exists():
            return {"version": None, "history": []}
        try:
            doc = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelError(f"{p}: not valid JSON ({e}); fix it or promote a version again") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("history", []), list):
            raise ModelError(f"{p}: needs 'version' and a 'history' list")
        doc.setdefault("history", [])
        return doc

    def promoted(self) -> str | None:
        """The promoted version, or ``None`` when nothing was promoted yet."""
        v = self._pointer().get("version")
        return v if isinstance(v, str) else None

    def history(self) -> list[dict[str, Any]]:
        return list(self._pointer()["history"])

    def user_ids(self, version: str) -> list[str] | None:
        """The user ids ``version`` was trained on, in its index order (``None``: not stored,
        a version saved without them)."""
        p = self.path(version) / USER_IDS
        if not p.is_file():
            return None
        try:
            ids = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelError(f"{p}: unreadable ({e})") from None
        if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
            raise ModelError(f"{p}: unreadable (not a list of ids)")
        return ids

    def load(self, version: str | None = None) -> dict[str, Any]:
        """``{config place: fitted component}`` of ``version`` (default: the promoted one)."""
        if version is None:
            version = self.promoted()
            if version is None:
                raise ModelError(f"{self.root / PROMOTED}: no promoted version; run "
                                 "`notefeed models promote VERSION`")
        base = self.path(version)
        comps = self.manifest(version)["components"]
        out = {}
        for key in comps:
            if not isinstance(key, str) or not _KEY_RE.match(key):
                raise ModelError(f"{base / MANIFEST}: bad component key {key!r}")
            out[key] = load_component(base / key)
        return out

    # ------------------------------------------------------------------ writing
    def save(self, components: dict[str, Any], manifest_extra: dict[str, Any] | None = None,
             user_ids: Any = None) -> str:
        """Write a new version and return its name (not promoted: see :meth:`promote`).

        ``components``: ``{config place: fitted component}`` (``recall.channels.<i>``,
        ``coarse``, ``fine``...), each with ``to_state``/``from_state``. ``manifest_extra``
        goes into the manifest; the keys read back are ``config`` (its hash is added as
        ``config_hash``), ``data`` (see :func:`data_snapshot`) and ``metrics``
        (``{component place: {metric: value}}``). ``user_ids``: the training data's user ids
        in index order (:meth:`user_ids`).
        """
        extra = dict(manifest_extra or {})
        for key in components:
            if not isinstance(key, str) or not _KEY_RE.match(key):
                raise ModelError(f"component key {key!r}: use config places like 'recall.channels.0'")
        now = _dt.datetime.now(_dt.UTC)
        stamp = now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z"
        chash = config_hash(extra["config"]) if "config" in extra else None
        seed = json.dumps([chash, sorted(components), now.isoformat(), os.getpid(), os.urandom(4).hex()])
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock():
            last = self.versions()
            version = f"{stamp}-{hashlib.sha256(seed.encode()).hexdigest()[:6]}"
            if last and version <= last[-1]:  # clock went back or same millisecond: stay sortable
                version = f"{last[-1][:-6]}{hashlib.sha256((seed + 'x').encode()).hexdigest()[:6]}"
                if version <= last[-1]:
                    version = last[-1][:-6] + format(int(last[-1][-6:], 16) + 1, "06x")[-6:]
            tmp = self.root / f".tmp-{version}"
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
            try:
                described = {}
                if user_ids is not None:  # JSON escapes every character an id may hold
                    (tmp / USER_IDS).write_text(json.dumps([str(x) for x in user_ids]), encoding="utf-8")
                for key, obj in components.items():
                    save_component(obj, tmp / key)
                    described[key] = {"name": obj.name, "class": f"{type(obj).__module__}:{type(obj).__qualname__}"}
                manifest = {
                    "version": version,
                    "created_at": now.isoformat(timespec="seconds"),
                    "created_at_unix": now.timestamp(),
                    "code": code_version(),
                    **{k: v for k, v in extra.items() if k not in ("components", "version")},
                    "config_hash": chash,
                    "components": described,
                }
                manifest.setdefault("data", None)
                manifest.setdefault("metrics", {})
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=_json_default) + "\n")
                os.replace(tmp, self.root / version)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return version

    def promote(self, version: str) -> str:
        """Make ``version`` the served one (its manifest and components are checked first)."""
        self.check(version)
        with self._lock():
            doc = self._pointer()
            prev = doc.get("version")
            doc["history"].append({"action": "promote", "version": version, "previous": prev, "at": _now()})
            doc["version"] = version
            self._write_pointer(doc)
        return version

    def rollback(self) -> str:
        """Return to the version promoted before the current one; return it."""
        with self._lock():
            doc = self._pointer()
            stack = _stack(doc["history"])
            if len(stack) < 2:
                raise ModelError(f"{self.root / PROMOTED}: nothing to roll back to "
                                 f"({'no version promoted' if not stack else 'only one version was promoted'})")
            target = stack[-2]
            self.check(target)
            doc["history"].append({"action": "rollback", "version": target, "previous": doc.get("version"),
                                   "at": _now()})
            doc["version"] = target
            self._write_pointer(doc)
        return target

    def check(self, version: str) -> None:
        """Manifest readable and every component folder present (no arrays are read)."""
        base = self.path(version)
        for key in self.manifest(version)["components"]:
            cp = base / str(key) / "component.json"
            if not cp.is_file():
                raise ModelError(f"{cp}: missing")

    def _write_pointer(self, doc: dict[str, Any]) -> None:
        p = self.root / PROMOTED
        tmp = p.with_name(f".{PROMOTED}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, p)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """An exclusive lock on ``models/.lock`` (two CLIs promoting at once stay consistent)."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: single writer assumed
            yield
            return
        with open(self.root / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _stack(history: list[dict[str, Any]]) -> list[str]:
    """The promotion stack replayed from the history: promote pushes, rollback pops."""
    stack: list[str] = []
    for h in history:
        if not isinstance(h, dict):
            continue
        if h.get("action") == "promote":
            stack.append(str(h.get("version")))
        elif h.get("action") == "rollback" and stack:
            stack.pop()
    return stack


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _json_default(o: Any) -> Any:
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    if hasattr(o, "item"):  # numpy scalars in metrics
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)
