"""The cold-start flow in the simulator: a base policy plus boosted slots from the cold-start
pool (:class:`~notefeed.online.coldstart.ColdStartPool`).

Importing this module (``notefeed.sim`` does) registers the ``popular+coldstart``,
``random+coldstart`` policies and their ``-uniform`` / ``-content`` variants in
:data:`~notefeed.sim.policies.POLICIES`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from notefeed.online.coldstart.pool import ColdStartPool
from notefeed.schema import POSITIVE_TYPES
from notefeed.sim.policies import POLICIES, PopularPolicy, RandomPolicy

__all__ = ["ColdStartPolicy"]


class ColdStartPolicy:
    """Wraps a simulator policy: up to ``slots`` pool notes per page, the base policy fills the rest.

    The wrapper keeps the pool in sync with the environment's observable side: on first use it
    indexes the catalogue's tags/categories and builds interest profiles from the logged history;
    notes published later enter the pool with their (author) tags and category.
    """

    def __init__(self, base: Any, pool: ColdStartPool, slots: int = 2, seed: int = 0, content: bool = False) -> None:
        if not isinstance(slots, int) or isinstance(slots, bool) or slots < 0:
            raise ValueError(f"ColdStartPolicy: slots must be a non-negative integer, got {slots!r}")
        self.base, self.pool, self.slots = base, pool, slots
        suffix = "" if pool.config.bandit == "thompson" else f"-{pool.config.bandit}"
        self.name = f"{base.name}+coldstart{suffix}" + ("-content" if content else "")
        # content=True: text vectors (TextEncoder) and predicted tags (TagPredictor) for new notes,
        # both fitted on the catalogue at first use; otherwise the author's tags and category only
        self.content = content
        self._encoder: Any = None
        self._tagger: Any = None
        self.rng = np.random.default_rng(seed)
        self._synced = False
        self._n_published = 0
        # (user, item) pairs this wrapper boosted, and their impressions/clicks: the boost's own CTR
        self._boosted: set[tuple[int, int]] = set()
        self.boost_impressions = 0
        self.boost_clicks = 0

    def _sync(self, env: Any) -> None:
        published = env.published_items
        if not self._synced:
            self._synced = True
            old = np.setdiff1d(np.arange(env.n_items), published)
            nf = env.notes_frame(old)
            vecs = None
            if self.content:
                from notefeed.content import TagPredictor, TextEncoder

                self._encoder = TextEncoder(dim=32)
                vecs = self._encoder.fit_transform((nf["title"] + " " + nf["text"]).tolist())
                self._tagger = TagPredictor(k=3).fit(vecs, list(nf["tags"]))
            self.pool.index_items(old, list(nf["tags"]), list(nf["category"]), vecs)
            ds = env.dataset
            if ds is not None and len(ds.events):
                self.pool.observe(ds.events[ds.events["type"].isin(POSITIVE_TYPES)])
        fresh = published[self._n_published:]  # publish appends, so only the tail is new
        self._n_published = len(published)
        if len(fresh):
            nf = env.notes_frame(fresh)
            tags, vecs = [list(t) for t in nf["tags"]], None
            if self.content:
                vecs = self._encoder.transform((nf["title"] + " " + nf["text"]).tolist())
                tags = [sorted(set(t) | set(p)) for t, p in zip(tags, self._tagger.predict_tags(vecs), strict=True)]
            self.pool.publish(fresh, vecs, tags, list(nf["category"]), ts=int(env.now))

    def recommend(self, env_view: Any, user: int, k: int) -> np.ndarray:
        self._sync(env_view)
        new, _, _ = self.pool.candidates_for(int(user), min(self.slots, k), self.rng, env_view.seen_items(user))
        self._boosted.update((int(user), i) for i in new.tolist())
        page = np.asarray(self.base.recommend(env_view, user, k), np.int64)
        page = page[~np.isin(page, new)][: k - len(new)]
        # spread the boosted notes over the page instead of stacking them where position bias is largest
        out = list(page.tolist())
        for j, i in enumerate(new.tolist()):
            out.insert(min(len(out), 1 + j * max(k // max(len(new), 1), 1)), i)
        return np.asarray(out[:k], np.int64)

    def observe(self, events: pd.DataFrame) -> None:
        self.base.observe(events)
        self.pool.observe(events)
        if self._boosted and len(events):
            pairs = zip(events["user"].tolist(), events["item"].tolist(), events["type"].tolist(), strict=True)
            for u, i, t in pairs:
                if t in ("impression", "click") and (u, i) in self._boosted:
                    if t == "impression":
                        self.boost_impressions += 1
                    else:
                        self.boost_clicks += 1

    def metrics(self) -> dict[str, float]:
        """Boosted impressions and their click-through; pool notes per stage (for the loop's result)."""
        out: dict[str, float] = {"boost_impressions": self.boost_impressions,
                                 "boost_ctr": self.boost_clicks / max(self.boost_impressions, 1)}
        out.update({f"pool_{k}": v for k, v in self.pool.summary().items()})
        return out


def _register() -> None:
    def factory(base: type, bandit: str, content: bool) -> Any:
        def make(seed: int = 0, slots: int = 2, **params: Any) -> ColdStartPolicy:
            return ColdStartPolicy(base(seed=seed), ColdStartPool(bandit=bandit, **params), slots=slots, seed=seed,
                                   content=content)
        how = "Thompson-sampling" if bandit == "thompson" else "uniformly drawn"
        make.__doc__ = (f"{base.__name__.removesuffix('Policy').lower()} plus {how} new-note slots from the cold-start "
                        f"pool{' (content-vector look-alikes)' if content else ''}.")
        return make

    for base_name, base in (("popular", PopularPolicy), ("random", RandomPolicy)):
        for bandit, content in (("thompson", False), ("uniform", False), ("thompson", True)):
            name = f"{base_name}+coldstart" + ("" if bandit == "thompson" else f"-{bandit}") + \
                ("-content" if content else "")
            if name not in POLICIES:
                POLICIES.register(name)(factory(base, bandit, content))


_register()
