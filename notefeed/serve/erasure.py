"""Erasing a user (``DELETE /v1/users/{id}``): an account deleted in the app, or a person's
request to have their data deleted.

What happens, in order (:meth:`notefeed.serve.engine.Engine.erase_user`):

1. The erasure (user id, time) is logged in the relation log (``WORKSPACE/relations.sqlite``,
   table ``erasures``) in the transaction that deletes the user's follow and block rows:
   durable before the answer, read by every worker (start-up and follower) and by the sync.
2. The serving logs lose the user's rows up to that time (:func:`purge_logs`): the event log
   (a Redis stream deletes the entries; the SQLite log blanks them into tombstones, keeping its
   positions), the search log (searches and their clicks), the experiment page log.
3. Every worker forgets what it holds about the user: online state (short sequence, seen set,
   counters), follows, blocks, hidden notes; the dataset's history and a trained version's rows
   for that id are no longer used (the id is served as a new user from then on: events sent
   after the erasure build a new online state).
   The ads logs (impressions, clicks: what advertisers were charged for) keep their lines with
   the user blanked, and so do the impressions held for clicks (in the process, in Redis).
4. ``notefeed train``'s sync (:mod:`notefeed.models.sync`) applies the erasure to the store: the
   user's events, relation rows and social edges are deleted, the user's attributes cleared,
   and the logs purged once more (an event another worker accepted while the erasure was
   written). A version trained after that sync has learned nothing from the user. The event
   lake's Parquet parts holding the user's events are rewritten at the next ``data lake export``.

Kept on purpose: the erasure row itself (the id and the time: what every process must know to
keep the user out), the user's row in the store's ``users`` table with empty attributes (the
row's place is the user index trained versions use), aggregates already counted from the
user's events (popularity, item-to-item co-occurrence, experiment tallies in memory) until the
next train or restart, and model versions trained before the erasure (serving never uses their
rows for the id; roll back to one and it still does not).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["purge_logs"]


def purge_logs(workspace: str | Path, user_id: str, until: float, bus: Any | None = None,
               search_log: Any | None = None, page_log: Any | None = None,
               ad_server: Any | None = None, state: Any | None = None) -> dict[str, int]:
    """Delete ``user_id``'s rows up to time ``until`` from the workspace's serving logs: the
    event log ``bus`` (when given), the search log and the experiment page log (the open ones
    given, else the workspace's files when they exist); blank the user in the ads logs' lines
    (and, with ``ad_server``, in the impressions it and Redis hold for clicks). Returns how many
    rows each lost or changed: ``events``, ``searches``, ``pages``, ``ad_lines``. ``state``: the
    online state; a Redis one beside a Redis ``bus`` counts the stream entries it applied, kept
    right by :func:`notefeed.online.redis_sync.erase`."""
    from notefeed.online.bus import RedisEventBus
    from notefeed.online.redis_sync import erase as erase_counted
    from notefeed.online.state import RedisOnlineState
    from notefeed.search.querylog import SearchLog
    from notefeed.serve.adslots import anonymise_ad_logs
    from notefeed.serve.experiments import PAGE_LOG, PageLog

    ws = Path(workspace)
    if isinstance(bus, RedisEventBus) and isinstance(state, RedisOnlineState):
        events = erase_counted(bus, state, user_id, until)
    else:
        events = bus.erase(user_id, until) if bus is not None else 0
    out = {"events": events, "searches": 0, "pages": 0, "ad_lines": 0}
    if (ws / "ads").is_dir():
        out["ad_lines"], ids = anonymise_ad_logs(ws / "ads", user_id, until)
        if ad_server is not None:
            ad_server.forget(user_id, ids)
    for key, given, cls, path in (("searches", search_log, SearchLog, ws / "search_log.sqlite"),
                                  ("pages", page_log, PageLog, ws / PAGE_LOG)):
        if given is not None:
            out[key] = given.erase(user_id, until)
        elif path.exists():
            log = cls(path)
            try:
                out[key] = log.erase(user_id, until)
            finally:
                log.close()
    return out
