"""What users say about creators through the API: follows and blocks.

Kept in the workspace's relation log (``WORKSPACE/relations.sqlite``, SQLite WAL, committed
before the API answers): one row per follow, unfollow, block or unblock, in order, by any
serving process on the workspace. A server replays it at start-up and, with ``--workers N``
(Redis backend), reads what the other workers appended with the notes they published
(:meth:`Engine._follow`). For a (user, creator) pair and kind, the newest row decides; a
``follow`` event posted on a note (the event log) counts as a follow at its receive time, so
the newer of the two wins whatever order the logs are replayed in.

``notefeed train``'s sync copies the rows into the store (:mod:`notefeed.models.sync`), where
training reads the newest per pair as ``Dataset.social`` edges (``social/follow`` is fitted on
them), so a version trained after a sync holds them already.

- A block: none of the creator's notes reaches that user's feed or search again.
- A follow: ``social/follow`` recalls the creator's notes for that user; an unfollow takes the
  creator out of the user's follows, the ones the channel was fitted with included.

The log also holds the **erasures** (``DELETE /v1/users/{id}``, :mod:`notefeed.serve.erasure`):
one row per erased user with its time, written in the same transaction that deletes that user's
relation rows. Every worker reads them like the relations (start-up, follower), and the sync
applies them to the store.
"""

from __future__ import annotations

import time
from pathlib import Path

from notefeed.online.bus import WalLog, immediate

__all__ = ["RelationLog", "KINDS", "MAX_PER_USER", "RELATIONS_FILE"]

#: the relation log's file in the workspace
RELATIONS_FILE = "relations.sqlite"

#: the relations a user can set on a creator
KINDS = ("block", "follow")
#: the most creators one user may hold per kind (the newest kept)
MAX_PER_USER = 5000


class RelationLog(WalLog):
    """Append-only log of (user, creator, kind, on) rows; thread-safe."""

    def __init__(self, path: str | Path, synchronous: str = "FULL") -> None:
        super().__init__(
            path, synchronous, "notefeed relation log",
            "CREATE TABLE IF NOT EXISTS relations (seq INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, "
            "creator_id TEXT NOT NULL, kind TEXT NOT NULL, active INTEGER NOT NULL, at REAL NOT NULL)",
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS erasures (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                         "user_id TEXT NOT NULL, at REAL NOT NULL)")
        #: the last position :meth:`since` read
        self.last_seq = 0
        #: the last erasure :meth:`erasures_since` read
        self.last_erasure_seq = 0

    def append(self, user_id: str, creator_id: str, kind: str, active: bool, at: float | None = None) -> float:
        """Log one relation set (``active``) or lifted; durable when this returns. Returns its time."""
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
        at = time.time() if at is None else float(at)
        with self._lock:
            self._db.execute("INSERT INTO relations (user_id, creator_id, kind, active, at) VALUES (?, ?, ?, ?, ?)",
                             (user_id, creator_id, kind, int(bool(active)), at))
        return at

    def since(self, seq: int) -> list[tuple[str, str, str, bool, float]]:
        """(user id, creator id, kind, active, time) rows logged after position ``seq``, in
        order; :attr:`last_seq` becomes the last one read."""
        return [r[1:] for r in self.after(seq, mark="last_seq")]

    def after(self, seq: int, limit: int | None = None,
              mark: str | None = None) -> list[tuple[int, str, str, str, bool, float]]:
        """(position, user id, creator id, kind, active, time) of the first ``limit`` rows after
        position ``seq`` (all without a limit), in order; :attr:`last_seq` is left as it is
        unless ``mark`` names it (the sync reads on its own connection)."""
        rows = self._after("relations", "user_id, creator_id, kind, active, at", seq, mark, limit)
        return [(int(q), str(u), str(c), str(k), bool(a), float(t)) for q, u, c, k, a, t in rows]

    def count_after(self, seq: int) -> int:
        """How many rows the log holds after position ``seq``."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM relations WHERE seq > ?", (int(seq),)).fetchone()[0])

    def erase(self, user_id: str, at: float | None = None) -> tuple[int, float, int]:
        """Log that ``user_id`` is erased and delete that user's relation rows up to then, in
        one transaction; durable when this returns. Returns (its position, its time, relation
        rows deleted)."""
        at = time.time() if at is None else float(at)
        with self._lock, immediate(self._db):
            n = self._db.execute("DELETE FROM relations WHERE user_id = ? AND at <= ?", (user_id, at)).rowcount
            seq = self._db.execute("INSERT INTO erasures (user_id, at) VALUES (?, ?)", (user_id, at)).lastrowid
        return int(seq), at, int(n)

    def erasures_since(self, seq: int) -> list[tuple[int, str, float]]:
        """(position, user id, time) of the erasures logged after position ``seq``, in order;
        :attr:`last_erasure_seq` becomes the last one read."""
        return [(int(q), str(u), float(t)) for q, u, t in self._after("erasures", "user_id, at", seq, "last_erasure_seq")]

    def erasures_after(self, seq: int, limit: int | None = None) -> list[tuple[int, str, float]]:
        """(position, user id, time) of the first ``limit`` erasures after position ``seq``, in
        order (the sync reads on its own connection: no mark moves)."""
        return [(int(q), str(u), float(t)) for q, u, t in self._after("erasures", "user_id, at", seq, None, limit)]

    def erasure_page(self, limit: int, offset: int = 0) -> tuple[int, list[tuple[str, float]]]:
        """(how many erasures are logged, the ``limit`` newest from ``offset``: user id, time)."""
        with self._lock:
            n = int(self._db.execute("SELECT count(*) FROM erasures").fetchone()[0])
            rows = self._db.execute("SELECT user_id, at FROM erasures ORDER BY seq DESC LIMIT ? OFFSET ?",
                                    (int(limit), int(offset))).fetchall()
        return n, [(str(u), float(t)) for u, t in rows]

    def erased(self) -> dict[str, float]:
        """Every erased user with the time of their latest erasure."""
        with self._lock:
            rows = self._db.execute("SELECT user_id, max(at) FROM erasures GROUP BY user_id").fetchall()
        return {str(u): float(t) for u, t in rows}
