"""The search query log: each served search page (query, user, the notes shown) and the clicks
that came back for it, joined by the page's ``request_id``.

The serving side (:mod:`notefeed.serve.search`) writes a row per search with the page's note
ids; clicks are ordinary events posted to ``POST /v1/events`` with ``surface="search"`` and the
page's ``request_id``: they go through the engine's event ingest (bus, online state) like feed
events, and the search service, subscribed to the accepted batches, records each click against
its query here. The log feeds query suggestions (what users typed, weighted by how often) and,
as a ``user_id, query, ts, clicked`` frame (:meth:`SearchLog.frame`), the rewrite mining of the
next index build.

SQLite in WAL mode (one file, safe for several serving processes); ``synchronous=NORMAL``:
a query log row is not acknowledged to anyone, so the last rows may be lost to a power cut.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from notefeed.online.bus import immediate

__all__ = ["SearchLog"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queries (
    request_id TEXT PRIMARY KEY, user_id TEXT, query TEXT NOT NULL, ts REAL NOT NULL, items TEXT NOT NULL,
    teams TEXT
);
CREATE TABLE IF NOT EXISTS clicks (
    request_id TEXT NOT NULL, note_id TEXT NOT NULL, user_id TEXT, ts REAL NOT NULL, type TEXT NOT NULL,
    position INTEGER
);
CREATE INDEX IF NOT EXISTS clicks_request ON clicks (request_id);
CREATE INDEX IF NOT EXISTS queries_ts ON queries (ts);
"""


class SearchLog:
    """Searches and their clicks (see the module docstring). Thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None,
                                      timeout=5.0)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            cols = {r[1] for r in self.db.execute("PRAGMA table_info(queries)")}
            if "teams" not in cols:  # a log written before interleaving
                try:
                    self.db.execute("ALTER TABLE queries ADD COLUMN teams TEXT")
                except sqlite3.OperationalError as e:  # another process added it first
                    if "duplicate column" not in str(e):
                        raise
        except sqlite3.DatabaseError as e:
            raise ValueError(f"{self.path}: not a search query log ({e})") from None
        self._lock = threading.Lock()

    def log_query(self, request_id: str, user_id: str | None, query: str, items: Sequence[str],
                  ts: float | None = None, teams: Sequence[str] | None = None) -> None:
        """One served page: ``query`` (normalised text) and the note ids shown, best first;
        ``teams``: on an interleaved page, the ranking each note came from
        (:mod:`notefeed.search.interleave`)."""
        if teams is not None and len(teams) != len(items):
            raise ValueError(f"teams: {len(teams)} for {len(items)} notes shown")
        with self._lock:
            self.db.execute("INSERT OR IGNORE INTO queries (request_id, user_id, query, ts, items, teams) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            (request_id, user_id, query, time.time() if ts is None else ts,
                             json.dumps(list(items), ensure_ascii=False),
                             None if teams is None else json.dumps(list(teams))))

    def log_clicks(self, rows: Iterable[tuple[str, str, str | None, float, str, int | None]]) -> int:
        """``(request_id, note_id, user_id, ts, type, position)`` rows of engaged search results
        whose ``request_id`` is a logged search; returns how many were recorded."""
        rows = list(rows)
        if not rows:
            return 0
        with self._lock:
            known = {r[0] for r in self.db.execute(
                f"SELECT request_id FROM queries WHERE request_id IN ({','.join('?' * len(rows))})",
                [r[0] for r in rows])}
            keep = [r for r in rows if r[0] in known]
            if keep:
                self.db.execute("BEGIN")
                self.db.executemany("INSERT INTO clicks VALUES (?, ?, ?, ?, ?, ?)", keep)
                self.db.execute("COMMIT")
        return len(keep)

    def query_of(self, request_id: str) -> dict[str, object] | None:
        """The logged search ``request_id`` with its clicks, or None."""
        with self._lock:
            row = self.db.execute("SELECT user_id, query, ts, items FROM queries WHERE request_id = ?",
                                  (request_id,)).fetchone()
            if row is None:
                return None
            clicks = self.db.execute("SELECT note_id, type, position, ts FROM clicks WHERE request_id = ? "
                                     "ORDER BY rowid", (request_id,)).fetchall()
        return {"request_id": request_id, "user_id": row[0], "query": row[1], "ts": row[2],
                "items": json.loads(row[3]),
                "clicks": [{"note_id": n, "type": t, "position": p, "ts": s} for n, t, p, s in clicks]}

    def queries(self, limit: int | None = None) -> list[str]:
        """Logged query texts, oldest first (the last ``limit`` when given)."""
        with self._lock:
            if limit is None:
                rows = self.db.execute("SELECT query FROM queries ORDER BY ts, rowid").fetchall()
            else:
                rows = self.db.execute("SELECT query FROM (SELECT query, ts, rowid AS r FROM queries "
                                       "ORDER BY ts DESC, rowid DESC LIMIT ?) ORDER BY ts, r", (limit,)).fetchall()
        return [r[0] for r in rows]

    def queries_after(self, rowid: int) -> tuple[int, list[tuple[str, str]]]:
        """(the last row read, the (request id, query) of the searches logged after row
        ``rowid``, by any process, in order)."""
        with self._lock:
            rows = self.db.execute("SELECT rowid, request_id, query FROM queries WHERE rowid > ? ORDER BY rowid",
                                   (int(rowid),)).fetchall()
        return (int(rows[-1][0]) if rows else int(rowid)), [(r, q) for _, r, q in rows]

    def last_row(self) -> int:
        with self._lock:
            return int(self.db.execute("SELECT coalesce(max(rowid), 0) FROM queries").fetchone()[0])

    def frame(self) -> pd.DataFrame:
        """``user_id, query, ts, clicked`` (one row per search, plus one per click; ``clicked``
        "" for the search row): the shape :func:`notefeed.search.rewrite.mine_rewrites` reads."""
        with self._lock:
            q = self.db.execute("SELECT request_id, user_id, query, ts FROM queries").fetchall()
            c = self.db.execute("SELECT request_id, note_id FROM clicks").fetchall()
        by_id = {r[0]: r for r in q}
        rows = [(u or "", qq, int(t), "") for _, u, qq, t in q]
        rows += [(by_id[r][1] or "", by_id[r][2], int(by_id[r][3]), n) for r, n in c if r in by_id]
        return pd.DataFrame(rows, columns=["user_id", "query", "ts", "clicked"])

    def pages(self, limit: int | None = None, interleaved: bool = False,
              since_ts: float | None = None) -> list[dict[str, object]]:
        """Logged pages with their engaged notes, oldest first (the latest ``limit`` when given):
        ``request_id, user_id, query, ts, items`` (note ids shown, best first), ``teams`` (the
        ranking of each shown note on an interleaved page, else None) and ``clicked`` (the
        distinct engaged note ids, first engagement first). The training data of the learned
        fusion (:mod:`notefeed.search.clickfusion`). ``interleaved``: only interleaved pages;
        ``since_ts``: only pages logged from then on."""
        where = []
        args: list[object] = []
        if interleaved:
            where.append("teams IS NOT NULL")
        if since_ts is not None:
            where.append("ts >= ?")
            args.append(float(since_ts))
        cond = (" WHERE " + " AND ".join(where)) if where else ""
        with self._lock:
            sql = f"SELECT request_id, user_id, query, ts, items, teams FROM queries{cond} ORDER BY ts DESC, rowid DESC"
            q = self.db.execute(sql + (" LIMIT ?" if limit is not None else ""),
                                (*args, limit) if limit is not None else tuple(args)).fetchall()
            if where:
                c = self.db.execute(f"SELECT request_id, note_id FROM clicks WHERE request_id IN "
                                    f"(SELECT request_id FROM queries{cond}) ORDER BY ts, rowid", args).fetchall()
            else:
                c = self.db.execute("SELECT request_id, note_id FROM clicks ORDER BY ts, rowid").fetchall()
        clicked: dict[str, list[str]] = {}
        for rid, note in c:
            got = clicked.setdefault(rid, [])
            if note not in got:
                got.append(note)
        return [{"request_id": rid, "user_id": u, "query": qq, "ts": float(t), "items": json.loads(items),
                 "teams": None if teams is None else json.loads(teams), "clicked": clicked.get(rid, [])}
                for rid, u, qq, t, items, teams in reversed(q)]

    def n_clicked_pages(self) -> int:
        """How many logged pages have at least one engaged note."""
        with self._lock:
            return int(self.db.execute("SELECT COUNT(DISTINCT request_id) FROM clicks").fetchone()[0])

    def __len__(self) -> int:
        with self._lock:
            return int(self.db.execute("SELECT COUNT(*) FROM queries").fetchone()[0])

    def erase(self, user_id: str, until: float) -> int:
        """Delete ``user_id``'s searches up to ``until`` and every click on them or by that
        user up to then (an erased user); returns how many searches."""
        with self._lock, immediate(self.db):
            self.db.execute("DELETE FROM clicks WHERE (user_id = ? AND ts <= ?) OR request_id IN "
                            "(SELECT request_id FROM queries WHERE user_id = ? AND ts <= ?)",
                            (user_id, until, user_id, until))
            n = self.db.execute("DELETE FROM queries WHERE user_id = ? AND ts <= ?", (user_id, until)).rowcount
        return int(n)

    def close(self) -> None:
        with self._lock:
            self.db.close()
