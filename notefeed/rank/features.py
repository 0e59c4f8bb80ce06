"""Ranking features computed at request time from the event log, vectorised.

:class:`FeatureBuilder` holds static side info (hashed user attributes, note tags, category,
author, creator followers, optional content vectors) and :class:`TimeIndex` views of the log.
:meth:`FeatureBuilder.features` turns ``(user, item, ts)`` rows into arrays, using only events
with ``ts < t`` for everything dynamic: real-time counters (5 min / 1 h, user x category and per
note), cumulative note engagement with Bayesian smoothing, the user's long-term category
distribution and counts, the short sequence (last 50 positive actions with their types) and the
SIM-style long sub-sequence (from the last 1,000 positive actions, the latest 20 in the target's
category). Ids are shifted by one so that 0 is padding / unknown everywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from notefeed.data.dataset import Dataset
from notefeed.rank.timeindex import TimeIndex
from notefeed.schema import EVENT_TYPES, POSITIVE_TYPES, SURFACES

__all__ = ["FeatureConfig", "FeatureBuilder", "DENSE_NAMES", "ENGAGE_TYPES", "hash_strings"]

ENGAGE_TYPES: tuple[str, ...] = ("click", "like", "collect", "comment", "share")
DENSE_NAMES: tuple[str, ...] = (
    "user_pos_log", "user_imp_log", "user_cat_share",
    "rt_user_cat_5m", "rt_user_cat_1h", "rt_note_pos_5m", "rt_note_pos_1h",
    "rt_note_imp_5m", "rt_note_imp_1h",
    *(f"note_rate_{t}" for t in ENGAGE_TYPES),
    "note_imp_log", *(f"note_{t}_log" for t in ENGAGE_TYPES),
    "note_age_log_h", "creator_followers_log", "small_creator", "position_log", "hour_sin", "hour_cos",
)
_TYPE_CODE = {t: k for k, t in enumerate(EVENT_TYPES)}
_POS_CODES = np.array([_TYPE_CODE[t] for t in POSITIVE_TYPES])


@dataclass
class FeatureConfig:
    """Sizes and windows of the request-time features (defaults follow the issue)."""

    short_len: int = 50  # last positive actions in the short sequence
    long_len: int = 1000  # how far back the long sequence looks
    long_top: int = 20  # target-relevant items kept from the long sequence
    n_tags: int = 4  # tags per note
    hash_buckets: int = 1 << 16  # user attribute / tag hash space
    smoothing: float = 20.0  # Bayesian prior strength (pseudo exposures)
    windows: tuple[int, int] = (300, 3600)  # real-time counter windows, seconds

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["windows"] = list(self.windows)
        return d


def hash_strings(values: np.ndarray, buckets: int) -> np.ndarray:
    """(n,) int64 in ``1..buckets-1`` (0 stays padding); stable across runs and machines."""
    h = pd.util.hash_array(np.asarray(values, dtype=object), categorize=False)
    return (h % np.uint64(buckets - 1)).astype(np.int64) + 1


class FeatureBuilder:
    """Static side info + time-indexed log of one dataset; see the module docstring.

    Frozen at construction: the :class:`TimeIndex` views are sorted arrays of the dataset's
    log, and events ingested while serving never reach them, so in a serving engine every
    real-time cell (``rt_*``, the short sequence) stops at the end of the log the scorer was
    fitted on (``rank/cgc``, ``rank/ple``, ...). The live path is ``rank/ltr``: its features
    (:func:`notefeed.serve.learned.candidate_features`) read the online state, which ingest
    updates, and offline engines warm it from their log (``Engine.warm_state``).
    """

    def __init__(self, ds: Dataset, cfg: FeatureConfig | None = None,
                 item_vectors: np.ndarray | None = None) -> None:
        self.cfg = cfg = cfg or FeatureConfig()
        self.n_users, self.n_items = ds.n_users, ds.n_items
        cat, self.cat_names = ds.item_category
        self.n_cats = len(self.cat_names)
        self.n_authors = len(ds.creators)
        # side tables with a padding row 0
        self.item_cat = np.concatenate([[0], cat.astype(np.int64) + 1])
        self.item_author = np.concatenate([[0], ds.item_author.astype(np.int64) + 1])
        self.item_tags = np.zeros((self.n_items + 1, cfg.n_tags), np.int64)
        tags = ds.notes["tags"].explode().dropna()
        if len(tags):
            rows = tags.index.to_numpy()
            slot = tags.groupby(level=0).cumcount().to_numpy()
            keep = slot < cfg.n_tags
            hashed = hash_strings(tags.astype(str).to_numpy()[keep], cfg.hash_buckets)
            self.item_tags[rows[keep] + 1, slot[keep]] = hashed
        attr_cols = [c for c in ds.users.columns if c != "user_id"]
        self.user_attrs = np.zeros((self.n_users + 1, max(1, len(attr_cols))), np.int64)
        for j, c in enumerate(attr_cols):
            vals = (c + "=" + ds.users[c].astype(str)).to_numpy()
            self.user_attrs[1:, j] = np.where(ds.users[c].isna(), 0, hash_strings(vals, cfg.hash_buckets))
        fol = ds.creator_followers[ds.item_author].astype(np.float64)
        self.item_followers_log = np.log1p(fol) / 10.0
        self.item_small = ds.item_is_small_creator.astype(np.float32)
        self.item_fbucket = np.concatenate([[0], np.minimum(np.log10(fol + 1).astype(np.int64), 7) + 1])
        self.item_created = ds.notes["created_at"].to_numpy(np.int64)
        if item_vectors is not None:
            item_vectors = np.asarray(item_vectors, np.float32)
            if item_vectors.shape[0] != self.n_items or not np.isfinite(item_vectors).all():
                raise ValueError(f"item_vectors: need ({self.n_items}, d) finite, got {item_vectors.shape}")
        self.item_vectors = item_vectors
        self._index(ds.events)

    # ------------------------------------------------------------------ log views
    def _index(self, ev: pd.DataFrame) -> None:
        u = ev["user"].to_numpy(np.int64)
        i = ev["item"].to_numpy(np.int64)
        ts = ev["ts"].to_numpy(np.int64)
        code = ev["type"].cat.codes.to_numpy(np.int64)
        pos = np.isin(code, _POS_CODES)
        imp = code == _TYPE_CODE["impression"]
        self.has_impressions = bool(imp.any())
        #: default request time when a caller gives none: just after the last logged event
        self.t_now = int(ts.max()) + 1 if len(ts) else 0
        c = self.item_cat[i + 1] - 1
        pu, pi, pts, pc, pcat = u[pos], i[pos], ts[pos], code[pos], c[pos]
        self.idx_user_pos = TimeIndex(pu, pts)
        self.idx_user_imp = TimeIndex(u[imp], ts[imp])
        self.idx_ucat = TimeIndex(pu * self.n_cats + pcat, pts)
        self.idx_item_pos = TimeIndex(pi, pts)
        self.idx_item_imp = TimeIndex(i[imp], ts[imp])
        self.idx_item_type = TimeIndex(i * len(EVENT_TYPES) + code, ts)
        # payloads in each index's sorted order
        self.seq_item = pi[self.idx_user_pos.order] + 1
        self.seq_type = pc[self.idx_user_pos.order] + 1
        # rank of each positive event within its user's timeline, for the 1,000-event SIM window
        urank_sorted = np.arange(len(pu)) - self.idx_user_pos.start(self.idx_user_pos.seg)
        urank = np.empty(len(pu), np.int64)
        urank[self.idx_user_pos.order] = urank_sorted
        self.long_item = pi[self.idx_ucat.order] + 1
        self.long_type = pc[self.idx_ucat.order] + 1
        self.long_urank = urank[self.idx_ucat.order]
        # global priors for smoothing (one constant per type over the whole log)
        counts = np.bincount(code, minlength=len(EVENT_TYPES)).astype(np.float64)
        denom = counts[_TYPE_CODE["impression"]] if self.has_impressions else max(len(code), 1)
        self.prior = {t: counts[_TYPE_CODE[t]] / max(denom, 1.0) for t in ENGAGE_TYPES}

    # ------------------------------------------------------------------ features
    @property
    def n_dense(self) -> int:
        extra = 0 if self.item_vectors is None else self.item_vectors.shape[1]
        return len(DENSE_NAMES) + extra

    def features(self, users: np.ndarray, items: np.ndarray, ts: np.ndarray,
                 position: np.ndarray | None = None, surface: np.ndarray | None = None,
                 chunk: int = 100_000) -> dict[str, np.ndarray]:
        """Feature arrays for rows ``(users[k], items[k], ts[k])``; see :meth:`_chunk`."""
        users = np.asarray(users, np.int64)
        items = np.asarray(items, np.int64)
        ts = np.broadcast_to(np.asarray(ts, np.int64), users.shape)
        n = len(users)
        if items.shape != users.shape:
            raise ValueError(f"features: users {users.shape} and items {items.shape} differ")
        if n and (items.min() < 0 or items.max() >= self.n_items):
            raise ValueError(f"features: field 'items' has indices outside 0..{self.n_items - 1}")
        if n and users.max() >= self.n_users:
            raise ValueError(f"features: field 'users' has indices >= {self.n_users}")
        pos = np.full(n, -1, np.int64) if position is None else np.asarray(position, np.int64)
        sur = np.zeros(n, np.int64) if surface is None else np.asarray(surface, np.int64)
        parts = [self._chunk(users[s:s + chunk], items[s:s + chunk], ts[s:s + chunk],
                             pos[s:s + chunk], sur[s:s + chunk]) for s in range(0, max(n, 1), chunk)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _chunk(self, u: np.ndarray, i: np.ndarray, t: np.ndarray, pos: np.ndarray,
               sur: np.ndarray) -> dict[str, np.ndarray]:
        """Arrays: user/item (m,), attrs (m, A), fbucket/surface (m,), dense (m, D) float32,
        seq_items/seq_types (m, short_len), long_items/long_types (m, long_top)."""
        cfg = self.cfg
        known = u >= 0
        uu = np.where(known, u, 0)
        cat = self.item_cat[i + 1] - 1
        w5, w60 = cfg.windows
        lg = np.log1p

        def uonly(x: np.ndarray) -> np.ndarray:  # unknown users have no history
            return np.where(known, x, 0)

        n_upos = uonly(self.idx_user_pos.end(uu, t) - self.idx_user_pos.start(uu))
        n_uimp = uonly(self.idx_user_imp.end(uu, t) - self.idx_user_imp.start(uu))
        ucat = uu * self.n_cats + cat
        n_ucat = uonly(self.idx_ucat.end(ucat, t) - self.idx_ucat.start(ucat))
        share = (n_ucat + cfg.smoothing / 4 / max(self.n_cats, 1)) / (n_upos + cfg.smoothing / 4)
        rt = [uonly(self.idx_ucat.count(ucat, t - w, t)) for w in (w5, w60)]
        rt += [self.idx_item_pos.count(i, t - w, t) for w in (w5, w60)]
        rt += [self.idx_item_imp.count(i, t - w, t) for w in (w5, w60)]
        nt = len(EVENT_TYPES)
        tc = {ty: self.idx_item_type.end(i * nt + _TYPE_CODE[ty], t) - self.idx_item_type.start(i * nt + _TYPE_CODE[ty])
              for ty in ("impression", *ENGAGE_TYPES)}
        denom = tc["impression"] if self.has_impressions else sum(tc[ty] for ty in ENGAGE_TYPES)
        m = cfg.smoothing
        rates = [(tc[ty] + m * self.prior[ty]) / (denom + m) for ty in ENGAGE_TYPES]
        created = self.item_created[i]
        age = np.where(created > 0, lg(np.maximum(t - created, 0) / 3600.0), 0.0)
        hour = (t % 86_400) / 86_400.0 * 2 * np.pi
        cols = [lg(n_upos), lg(n_uimp), share, *(lg(x) for x in rt), *rates,
                *(lg(tc[ty]) for ty in ("impression", *ENGAGE_TYPES)),
                age, self.item_followers_log[i], self.item_small[i], lg(pos + 1.0),
                np.sin(hour), np.cos(hour)]
        dense = np.stack(cols, axis=1).astype(np.float32)
        if self.item_vectors is not None:
            dense = np.concatenate([dense, self.item_vectors[i]], axis=1)
        sp = self.idx_user_pos.last_k(uu, t, cfg.short_len)
        sp = np.where(known[:, None], sp, -1)
        lp = self.idx_ucat.last_k(ucat, t, cfg.long_top)
        # SIM window: only events among the user's last ``long_len`` positives
        horizon = (n_upos - cfg.long_len)[:, None]
        lp = np.where(known[:, None] & (lp >= 0) & (self.long_urank[np.maximum(lp, 0)] >= horizon), lp, -1)
        return {
            "user": np.where(known, u + 1, 0),
            "item": i + 1,
            "attrs": self.user_attrs[np.where(known, u + 1, 0)],
            "fbucket": self.item_fbucket[i + 1],
            "surface": np.clip(sur, 0, len(SURFACES) - 1),
            "dense": dense,
            "seq_items": np.where(sp >= 0, self.seq_item[np.maximum(sp, 0)], 0),
            "seq_types": np.where(sp >= 0, self.seq_type[np.maximum(sp, 0)], 0),
            "long_items": np.where(lp >= 0, self.long_item[np.maximum(lp, 0)], 0),
            "long_types": np.where(lp >= 0, self.long_type[np.maximum(lp, 0)], 0),
        }

    def vocab(self) -> dict[str, int]:
        """Table sizes the model needs (padding row included)."""
        return {
            "n_users": self.n_users + 1, "n_items": self.n_items + 1, "n_cats": self.n_cats + 1,
            "n_authors": self.n_authors + 1, "hash_buckets": self.cfg.hash_buckets,
            "n_attrs": self.user_attrs.shape[1], "n_tags": self.cfg.n_tags, "n_dense": self.n_dense,
        }
