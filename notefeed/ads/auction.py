"""Ranking and auction: eCPM, generalised second-price auction with a reserve price and a
quality score, ad slots among organic notes, frequency caps. Kernels are pure functions.

Units: ``bid`` is money per click; ``pctr``/``pcvr`` probabilities; eCPM is money per 1,000
impressions. For oCPC the per-click bid is ``target_cpa x pCVR``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

__all__ = ["click_bids", "ecpm", "gsp_auction", "AuctionResult", "place_ads", "FrequencyCap"]


def click_bids(bid: np.ndarray, ocpc: np.ndarray, pcvr: np.ndarray) -> np.ndarray:
    """Per-click bids (n,): ``bid`` for CPC rows, ``bid x pCVR`` for oCPC rows (``ocpc`` (n,) bool)."""
    bid = np.asarray(bid, np.float64)
    return np.where(np.asarray(ocpc, bool), bid * np.asarray(pcvr, np.float64), bid)


def ecpm(click_bid: np.ndarray, pctr: np.ndarray) -> np.ndarray:
    """Expected revenue per 1,000 impressions (n,): ``1000 x bid x pCTR``."""
    return 1000.0 * np.asarray(click_bid, np.float64) * np.asarray(pctr, np.float64)


@dataclass
class AuctionResult:
    """``winners`` (m,) input indices in slot order; ``prices`` (m,) cost per click of each."""

    winners: np.ndarray
    prices: np.ndarray


def gsp_auction(bids: np.ndarray, quality: np.ndarray, n_slots: int, reserve: float = 0.0,
                relevance: np.ndarray | None = None, relevance_floor: float = 0.0,
                reserve_ecpm: float = 0.0) -> AuctionResult:
    """Generalised second-price auction with quality scores.

    ``bids`` (n,) per-click bids, ``quality`` (n,) > 0 (pCTR x relevance, say). An ad is eligible
    when its bid >= ``reserve``, its ``relevance`` >= ``relevance_floor`` and its eCPM
    ``1000 x bid x quality`` >= ``reserve_ecpm`` (the knob that sets the ad load). Eligible ads
    are ranked by ``bid x quality``; the one in slot j pays per click the least bid that keeps its
    rank and its eligibility, ``max(reserve, reserve_ecpm / (1000 quality_j), score_{j+1} / quality_j)``,
    never more than its own bid. Ties keep input order.
    """
    bids = np.asarray(bids, np.float64)
    q = np.asarray(quality, np.float64)
    if bids.shape != q.shape or bids.ndim != 1:
        raise ValueError(f"gsp_auction: 'bids' and 'quality' must be (n,), got {bids.shape} and {q.shape}")
    ok = np.isfinite(bids) & np.isfinite(q) & (q > 0) & (bids >= reserve) & (bids > 0)
    if reserve_ecpm > 0:
        ok &= 1000.0 * bids * q >= reserve_ecpm
    if relevance is not None:
        ok &= np.asarray(relevance, np.float64) >= relevance_floor
    idx = np.flatnonzero(ok)
    score = bids[idx] * q[idx]
    order = idx[np.argsort(-score, kind="stable")]
    win = order[: max(0, int(n_slots))]
    nxt = np.append(bids[order] * q[order], 0.0)[1: len(win) + 1]
    if len(win):
        prices = np.maximum(np.maximum(reserve, reserve_ecpm / (1000.0 * q[win])), nxt / q[win])
    else:
        prices = np.zeros(0)
    prices = np.minimum(prices, bids[win])
    return AuctionResult(win.astype(np.int64), prices.astype(np.float64))


def place_ads(n_organic: int, n_ads: int, first: int = 2, spacing: int = 4, load_cap: float = 0.2) -> list[tuple[str, int]]:
    """Interleave ``n_ads`` ranked ads into ``n_organic`` notes: ``[("note"|"ad", index), ...]``.

    The first ad goes at position ``first`` (0-based) at the earliest; between two ads there are
    at least ``spacing`` organic notes; ads are at most ``load_cap`` of the page.
    """
    if first < 0 or spacing < 1 or not 0.0 <= load_cap <= 1.0:
        raise ValueError("place_ads: need first >= 0, spacing >= 1, 0 <= load_cap <= 1")
    max_ads = min(n_ads, int(np.floor(load_cap * (n_organic + n_ads))))
    while max_ads > 0 and max_ads / (n_organic + max_ads) > load_cap:
        max_ads -= 1
    out: list[tuple[str, int]] = []
    since, placed, note_i = spacing, 0, 0  # organic notes since the last ad
    while note_i < n_organic:
        if placed < max_ads and len(out) >= first and since >= spacing:
            out.append(("ad", placed))
            placed, since = placed + 1, 0
        else:
            out.append(("note", note_i))
            note_i, since = note_i + 1, since + 1
    return out


class FrequencyCap:
    """At most ``per_day`` impressions of a campaign to a user per day (UNIX-day buckets)."""

    def __init__(self, per_day: int = 3) -> None:
        if per_day < 1:
            raise ValueError(f"FrequencyCap: 'per_day' must be >= 1, got {per_day}")
        self.per_day = per_day
        self._seen: dict[tuple[int | str, str, int], int] = defaultdict(int)
        self._day = -1

    def allowed(self, user: int | str, campaign_id: str, now_s: float) -> bool:
        return self._seen.get((user, campaign_id, int(now_s // 86400)), 0) < self.per_day

    def forget(self, user: int | str) -> None:
        """Drop ``user``'s counts (an erased user)."""
        self._seen = defaultdict(int, {k: v for k, v in self._seen.items() if k[0] != user})

    def record(self, user: int | str, campaign_id: str, now_s: float) -> None:
        day = int(now_s // 86400)
        if day > self._day:  # a new day: yesterday's counts no longer cap anything
            self._seen = defaultdict(int, {k: v for k, v in self._seen.items() if k[2] >= day})
            self._day = day
        self._seen[(user, campaign_id, day)] += 1
