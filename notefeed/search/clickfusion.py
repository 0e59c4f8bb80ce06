"""The learned fusion fitted from a workspace's search log (no ground truth: clicks).

Each logged page (:meth:`notefeed.search.querylog.SearchLog.pages`: query, user, the notes
shown, the notes engaged) with at least one engagement is replayed through the serving code:
the pipeline's query understanding (with rewrites), retrieval and :meth:`SearchPipeline.features
<notefeed.search.pipeline.SearchPipeline.features>` with the user's profile, so the rows are the
features serving scores. Labels:

- 1: an engaged note that is among the replayed candidates;
- 0: a note shown above the last engaged one and not engaged ("skip above": it was most
  likely seen and passed over);
- 0: ``sampled`` candidates per page that were neither shown nor engaged, drawn at random
  (never shown, so a weaker negative: mostly notes the old ranking put low). None by default:
  on the simulator they taught the trees "shown or not", RRF's own ranking, and the fusion did
  not beat RRF; without them it did, from 1,500 logged searches (``docs/search.md``).

Notes shown below the last engagement are left out (probably never examined). Pages are split
by time: the oldest ``1 - valid_share`` train the model, the latest are the validation, where
the learned fusion and RRF (the hand-weighted score, personalised the same way) each rank every
replayed candidate and are compared by click MRR and click NDCG@10 (gain 1 per engaged note).
``beats_rrf`` records whether the learned fusion's click NDCG@10 is higher; ``fusion: auto``
serves it only then. Note that the validation clicks were collected on pages that the serving
fusion of the time ranked: they favour that ranking (a note it put low was never clicked).

With fewer than ``min_clicked_pages`` engaged pages nothing is trained (``reason`` says so)
and serving stays on RRF. The model is saved as JSON (``fusion.json`` in the index folder), the
training record in its ``meta``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from notefeed.search.base import SearchError
from notefeed.search.fusion import LearnedFusion
from notefeed.search.pipeline import SearchPipeline

__all__ = ["ClickFusionReport", "replay_pages", "click_metrics", "train_click_fusion", "install", "history_before",
           "MIN_CLICKED_PAGES"]

#: the fewest engaged pages a search log needs before a fusion is trained from it
MIN_CLICKED_PAGES = 200

Page = dict[str, Any]
#: the user's positive items to personalise a logged page with (as of its time), or None
History = Callable[[Page], "np.ndarray | None"]


@dataclass
class _Replayed:
    ts: float
    items: np.ndarray  # (u,) candidate item indices
    x: np.ndarray  # (u, len(FEATURES))
    rrf: np.ndarray  # (u,) the hand-weighted score of the candidates
    clicked: np.ndarray  # (u,) bool
    negative: np.ndarray  # (u,) bool: skipped above a click, or sampled
    personal: bool
    shown: np.ndarray  # (s,) candidate rows of the notes shown, in the logged order


@dataclass
class ClickFusionReport:
    """What :func:`train_click_fusion` did; ``fusion`` None when it trained nothing."""

    fusion: LearnedFusion | None
    reason: str
    counts: dict[str, int] = field(default_factory=dict)
    valid: dict[str, dict[str, float]] = field(default_factory=dict)
    beats_rrf: bool = False
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"trained": self.fusion is not None, "reason": self.reason, "counts": self.counts,
                "valid": self.valid, "beats_rrf": self.beats_rrf, "seconds": round(self.seconds, 2)}


def replay_pages(pipe: SearchPipeline, pages: Sequence[Page], history: History | None = None,
                 sampled: int = 0, seed: int = 0) -> tuple[list[_Replayed], dict[str, int]]:
    """Replay the engaged ``pages`` through ``pipe`` (see the module docstring); returns the
    replayed pages and counts (pages, engaged pages, clicks found among the candidates, ...)."""
    rng = np.random.default_rng(seed)
    out: list[_Replayed] = []
    counts = {"pages": len(pages), "clicked_pages": 0, "clicks": 0, "clicks_not_candidates": 0,
              "pages_unreplayable": 0}
    for page in pages:
        clicked_ids = [str(n) for n in page.get("clicked") or []]
        if not clicked_ids:
            continue
        counts["clicked_pages"] += 1
        counts["clicks"] += len(clicked_ids)
        try:
            pq = pipe.understanding.parse(str(page["query"]))
        except SearchError:
            counts["pages_unreplayable"] += 1
            continue
        if pq.empty and not pq.rewrites:
            counts["pages_unreplayable"] += 1
            continue
        lex, dense = pipe.retrieve(pq)
        h = history(page) if history is not None else None
        prof = pipe.profile(h) if pipe.config.personalise and h is not None else None
        items, x = pipe.features(pq, lex, dense, prof)
        if not len(items):
            counts["pages_unreplayable"] += 1
            continue
        where = {int(i): j for j, i in enumerate(items.tolist())}
        shown = [str(n) for n in page.get("items") or []]
        clicked = np.zeros(len(items), bool)
        for n in clicked_ids:
            j = where.get(pipe.note_index.get(n, -1))
            if j is None:
                counts["clicks_not_candidates"] += 1
            else:
                clicked[j] = True
        if not clicked.any():
            counts["pages_unreplayable"] += 1
            continue
        negative = np.zeros(len(items), bool)
        cset = set(clicked_ids)
        last = max((k for k, n in enumerate(shown) if n in cset), default=-1)
        for n in shown[:last]:
            j = where.get(pipe.note_index.get(n, -1))
            if j is not None and n not in cset:
                negative[j] = True
        if sampled > 0:
            shown_items = {pipe.note_index[n] for n in shown if n in pipe.note_index}
            pool = np.flatnonzero(~clicked & ~negative & ~np.isin(items, list(shown_items)))
            if len(pool):
                negative[rng.choice(pool, min(sampled, len(pool)), replace=False)] = True
        base = pipe.score(x, lex, dense, prof is not None, fusion="rrf")
        rows = np.array([j for j in (where.get(pipe.note_index.get(n, -1)) for n in shown) if j is not None], np.int64)
        out.append(_Replayed(float(page.get("ts") or 0.0), items, x, base, clicked, negative, prof is not None, rows))
    return out, counts


def click_metrics(scores: list[np.ndarray], clicked: list[np.ndarray]) -> dict[str, float]:
    """Mean click MRR (first engaged note) and click NDCG@10 (gain 1 per engaged note) of
    candidate ``scores`` per page (higher first; ties in candidate order)."""
    mrr, ndcg = [], []
    disc = 1.0 / np.log2(np.arange(2, 12))
    for s, c in zip(scores, clicked, strict=True):
        hit = c[np.argsort(-s, kind="stable")]
        first = np.flatnonzero(hit)
        mrr.append(1.0 / (first[0] + 1) if len(first) else 0.0)
        ideal = float(disc[: min(int(c.sum()), 10)].sum())
        ndcg.append(float(disc[: min(10, len(hit))][hit[:10]].sum()) / ideal if ideal > 0 else 0.0)
    return {"click_mrr": float(np.mean(mrr)) if mrr else 0.0, "click_ndcg@10": float(np.mean(ndcg)) if ndcg else 0.0}


def train_click_fusion(pipe: SearchPipeline, pages: Sequence[Page], history: History | None = None, *,
                       min_clicked_pages: int = MIN_CLICKED_PAGES, valid_share: float = 0.2, sampled: int = 0,
                       model: str | None = None, seed: int = 0) -> ClickFusionReport:
    """Fit the learned fusion on the engaged ``pages`` of a search log (oldest first or not:
    they are ordered by ``ts`` here) and validate it against RRF on the latest ones; the pipeline
    is not changed (see :func:`install`)."""
    t0 = time.perf_counter()
    if not 0 < valid_share < 1:
        raise SearchError(f"valid_share: expected a share in (0, 1), got {valid_share}")
    n_clicked = sum(1 for p in pages if p.get("clicked"))
    if n_clicked < min_clicked_pages:
        return ClickFusionReport(None, f"the search log has {n_clicked} searches with a click; a learned fusion "
                                 f"needs at least {min_clicked_pages}: search stays on RRF",
                                 {"pages": len(pages), "clicked_pages": n_clicked}, seconds=time.perf_counter() - t0)
    pages = sorted(pages, key=lambda p: float(p.get("ts") or 0.0))
    rep, counts = replay_pages(pipe, pages, history, sampled, seed)
    if len(rep) < min_clicked_pages:
        return ClickFusionReport(None, f"{len(rep)} of the {n_clicked} searches with a click could be replayed "
                                 f"(the engaged note among the candidates); a learned fusion needs at least "
                                 f"{min_clicked_pages}: search stays on RRF", counts,
                                 seconds=time.perf_counter() - t0)
    n_valid = max(1, int(round(len(rep) * valid_share)))
    train, valid = rep[: len(rep) - n_valid], rep[len(rep) - n_valid:]
    x = np.concatenate([np.r_[r.x[r.clicked], r.x[r.negative]] for r in train])
    y = np.concatenate([np.r_[np.ones(int(r.clicked.sum())), np.zeros(int(r.negative.sum()))] for r in train])
    fusion = LearnedFusion(model=model or pipe.config.learned_model).fit(x, y)
    learned = click_metrics([fusion.score(r.x) for r in valid], [r.clicked for r in valid])
    base = click_metrics([r.rrf for r in valid], [r.clicked for r in valid])
    # the shown page re-ordered, against the logged order
    sv = [r for r in valid if len(r.shown) and r.clicked[r.shown].any()]
    learned_page = click_metrics([fusion.score(r.x[r.shown]) for r in sv], [r.clicked[r.shown] for r in sv])
    logged_page = click_metrics([-np.arange(len(r.shown), dtype=np.float64) for r in sv],
                                [r.clicked[r.shown] for r in sv])
    learned = {**learned, **{f"page_{k}": v for k, v in learned_page.items()}}
    base = {**base, **{f"page_{k}": v for k, v in logged_page.items()}}
    beats = learned["click_ndcg@10"] > base["click_ndcg@10"]
    counts = {**counts, "replayed_pages": len(rep), "train_pages": len(train), "valid_pages": len(valid),
              "train_rows": len(y), "train_positives": int(y.sum()),
              "personalised_pages": sum(1 for r in rep if r.personal)}
    fusion.meta = {"source": "search log", "trained_at": time.time(), "counts": counts,
                   "valid": {"learned": learned, "rrf": base}, "beats_rrf": bool(beats),
                   "train_until_ts": train[-1].ts, "valid_from_ts": valid[0].ts,
                   "labels": {"positive": "engaged", "negative": "shown above an engagement, not engaged",
                              "sampled_negatives_per_page": sampled}}
    word = "beats" if beats else "does not beat"
    reason = (f"trained on {len(train)} searches; on the latest {len(valid)} it {word} RRF "
              f"(click NDCG@10 {learned['click_ndcg@10']:.3f} vs {base['click_ndcg@10']:.3f})")
    return ClickFusionReport(fusion, reason, counts, {"learned": learned, "rrf": base}, bool(beats),
                             time.perf_counter() - t0)


def install(pipe: SearchPipeline, report: ClickFusionReport) -> bool:
    """Attach the trained fusion to ``pipe`` and save the index folder (``fusion.json``);
    False (nothing changed) when nothing was trained."""
    if report.fusion is None:
        return False
    pipe.fusion = report.fusion
    if pipe.path is not None:
        pipe.save()
    return True



def history_before(events: Any, user_index: dict[str, int]) -> History:
    """A :data:`History` from a positives frame (``user``, ``item``, ``ts``: a dataset's
    ``select_events()``): the page's user's positive items strictly before the page's time, so
    a page's own outcome (an engagement that later became a like) is not in its features."""
    users = events["user"].to_numpy(np.int64)
    order = np.lexsort((events["ts"].to_numpy(np.float64), users))
    users, items = users[order], events["item"].to_numpy(np.int64)[order]
    ts = events["ts"].to_numpy(np.float64)[order]
    start = np.searchsorted(users, np.arange(max(user_index.values(), default=-1) + 2))

    def history(page: Page) -> np.ndarray | None:
        u = user_index.get(str(page.get("user_id"))) if page.get("user_id") is not None else None
        if u is None:
            return None
        lo, hi = int(start[u]), int(start[u + 1])
        return items[lo: lo + int(np.searchsorted(ts[lo:hi], float(page.get("ts") or 0.0), side="left"))]

    return history
