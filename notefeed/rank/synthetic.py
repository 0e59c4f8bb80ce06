"""A small synthetic feed log with signal, for ranking tests, benchmarks and the eval fallback.

Users have a hidden taste over categories; each request shows ``page`` notes (mostly from
liked categories, some random). A click depends on taste, note quality and position; deeper
actions (like/collect/comment/share) depend on click and on correlated hidden factors, and dwell
grows with taste. Every request writes its impressions and actions with a ``request_id``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from notefeed.data.dataset import Dataset

__all__ = ["synthetic_feed"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def synthetic_feed(
    n_users: int = 200,
    n_items: int = 800,
    n_cats: int = 12,
    n_creators: int = 120,
    requests_per_user: int = 8,
    page: int = 10,
    seed: int = 0,
    t0: int = 1_700_000_000,
) -> Dataset:
    """A feed log with impressions, click..share and dwell; see the module docstring."""
    rng = np.random.default_rng(seed)
    taste = rng.normal(0.0, 1.0, (n_users, n_cats)) * 1.5
    item_cat = rng.integers(0, n_cats, n_items)
    quality = rng.normal(0.0, 0.7, n_items)
    share_factor = rng.normal(0.0, 1.0, n_items)
    author = rng.integers(0, n_creators, n_items)
    followers = np.where(rng.random(n_creators) < 0.6, rng.integers(0, 1000, n_creators),
                         rng.integers(1000, 200_000, n_creators))
    n_req = n_users * requests_per_user
    req_user = np.repeat(np.arange(n_users), requests_per_user)
    # requests spread over two days, users interleaved so real-time windows have content
    req_ts = t0 + np.sort(rng.integers(0, 2 * 86_400, n_req))
    req_user = rng.permutation(req_user)
    by_cat = [np.flatnonzero(item_cat == c) for c in range(n_cats)]

    # pick impressed notes: 70% from the user's top-3 categories, 30% anywhere
    top3 = np.argsort(-taste, axis=1)[:, :3]
    u = np.repeat(req_user, page)
    from_taste = rng.random(n_req * page) < 0.7
    cat_pick = top3[u, rng.integers(0, 3, n_req * page)]
    items = rng.integers(0, n_items, n_req * page)
    for c in range(n_cats):
        sel = from_taste & (cat_pick == c)
        if sel.any() and len(by_cat[c]):
            items[sel] = by_cat[c][rng.integers(0, len(by_cat[c]), int(sel.sum()))]
    pos = np.tile(np.arange(page), n_req)
    ts = np.repeat(req_ts, page) + pos  # one second per slot keeps the order in the log
    rid = np.repeat(np.arange(n_req), page)
    aff = taste[u, item_cat[items]]
    p_click = _sigmoid(0.9 * aff + quality[items] - 1.2 - 0.08 * pos)
    click = rng.random(len(u)) < p_click
    deeper = {
        "like": _sigmoid(0.8 * aff + 0.8 * quality[items] - 1.0),
        "collect": _sigmoid(0.6 * aff + 1.0 * quality[items] - 1.8),
        "comment": _sigmoid(0.4 * aff + 0.8 * share_factor[items] - 2.3),
        "share": _sigmoid(0.3 * aff + 1.2 * share_factor[items] - 2.0),
    }
    frames = [pd.DataFrame({"u": u, "i": items, "ts": ts, "type": "impression", "position": pos,
                            "rid": rid, "dwell_s": np.nan})]
    dwell = np.exp(2.5 + 0.4 * aff + 0.3 * quality[items] + rng.normal(0, 0.5, len(u)))
    frames.append(pd.DataFrame({"u": u[click], "i": items[click], "ts": ts[click] + 1, "type": "click",
                                "position": pos[click], "rid": rid[click], "dwell_s": dwell[click]}))
    for k, (name, p) in enumerate(deeper.items()):
        hit = click & (rng.random(len(u)) < p)
        frames.append(pd.DataFrame({"u": u[hit], "i": items[hit], "ts": ts[hit] + 2 + k, "type": name,
                                    "position": pos[hit], "rid": rid[hit], "dwell_s": np.nan}))
    ev = pd.concat(frames, ignore_index=True)
    events = pd.DataFrame({
        "user_id": "u" + ev["u"].astype(str), "note_id": "n" + ev["i"].astype(str), "ts": ev["ts"],
        "type": ev["type"], "position": ev["position"], "dwell_s": ev["dwell_s"],
        "request_id": "r" + ev["rid"].astype(str), "surface": "feed",
    })
    notes = pd.DataFrame({
        "note_id": [f"n{i}" for i in range(n_items)],
        "author_id": [f"c{a}" for a in author],
        "category": [f"cat{c}" for c in item_cat],
        "tags": [[f"t{c}", f"t{c}_{i % 5}"] for i, c in enumerate(item_cat)],
        "created_at": t0 - rng.integers(0, 30 * 86_400, n_items),
    })
    users = pd.DataFrame({
        "user_id": [f"u{i}" for i in range(n_users)],
        "gender": rng.choice(["f", "m"], n_users),
        "age": rng.choice(["18-24", "25-34", "35+"], n_users),
    })
    creators = pd.DataFrame({"creator_id": [f"c{a}" for a in range(n_creators)], "followers": followers})
    return Dataset.build("synthetic-feed", events, notes, users, creators,
                         meta={"synthetic": True, "seed": seed})
