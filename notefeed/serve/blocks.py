"""Creators a user blocked: none of their notes reaches that user's feed or search again.

Kept in the workspace's block log (``WORKSPACE/blocks.sqlite``, SQLite WAL, committed before
the API answers): one row per block or unblock, in order, by any serving process on the
workspace. A server replays it at start-up and, with ``--workers N`` (Redis backend), reads
what the other workers appended with the notes they published (:meth:`Engine._follow`).
The newest row of a (user, creator) pair decides.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from notefeed.online.bus import open_wal

__all__ = ["BlockLog", "MAX_BLOCKS"]

#: the most creators one user may block (the newest kept)
MAX_BLOCKS = 5000


class BlockLog:
    """Append-only log of (user, creator, blocked) rows; thread-safe."""

    def __init__(self, path: str | Path, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = open_wal(
            self.path, synchronous, "notefeed block log",
            "CREATE TABLE IF NOT EXISTS blocks (seq INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, "
            "creator_id TEXT NOT NULL, blocked INTEGER NOT NULL, at REAL NOT NULL)",
        )
        #: the last position :meth:`since` read
        self.last_seq = 0

    def append(self, user_id: str, creator_id: str, blocked: bool) -> None:
        """Log one block (``blocked``) or unblock; durable when this returns."""
        with self._lock:
            self._db.execute("INSERT INTO blocks (user_id, creator_id, blocked, at) VALUES (?, ?, ?, ?)",
                             (user_id, creator_id, int(bool(blocked)), time.time()))

    def since(self, seq: int) -> list[tuple[str, str, bool]]:
        """(user id, creator id, blocked) rows logged after position ``seq``, in order;
        :attr:`last_seq` becomes the last one read."""
        with self._lock:
            rows = self._db.execute("SELECT seq, user_id, creator_id, blocked FROM blocks WHERE seq > ? "
                                    "ORDER BY seq", (int(seq),)).fetchall()
        if rows:
            self.last_seq = max(self.last_seq, int(rows[-1][0]))
        return [(str(u), str(c), bool(b)) for _, u, c, b in rows]

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:  # pragma: no cover - closing twice
                pass
