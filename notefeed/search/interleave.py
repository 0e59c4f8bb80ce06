"""Team-draft interleaving: which of two rankings do users prefer, from clicks that neither
ranking alone biased.

A fusion trained from clicks cannot be validated on the clicks of the ranking that served them:
every click is on a note that ranking showed, mostly near its top, so the old ranking wins that
comparison whatever the new one is worth (``docs/search.md``). Interleaving (Radlinski, Kurup and
Joachims, *How does clickthrough data reflect retrieval quality?*, CIKM 2008) shows one page made
from both rankings instead: the two "teams" take turns (the team with fewer picks first, a coin
deciding ties) to add their best note not yet on the page, and each note remembers its team. A
user who examines the page from the top sees, at every depth, about as many notes of each team,
so position bias cancels: the team whose notes get more clicks on a page wins that page.

Over pages with a click, a ranking that is no better than the other wins as many pages as it
loses; :func:`interleaving_verdict` counts wins, losses and ties and applies a two-sided sign
test to the decided pages. The test is made once, on a fixed number of pages (``pages``), not
again after every page: looking until it turns significant would make a false win much more
likely than ``alpha``.

Pure functions over arrays and logged pages; serving (:class:`notefeed.search.pipeline.SearchPipeline`,
``fusion: auto`` with ``interleave_share``) and the search log call them, and
:func:`verdict_from_log` reads a search log's interleaved pages for a loaded fusion.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["team_draft", "page_outcome", "interleaving_verdict", "sign_test_p", "verdict_from_log", "TEAMS"]

#: the two teams as logged: the hand-weighted score and the learned fusion
TEAMS = ("rrf", "learned")


def team_draft(a: np.ndarray, b: np.ndarray, n: int, rng: np.random.Generator | random.Random,
               small: tuple[set, set] | None = None, share: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(page items (m,) int64, team of each (m,) int8: 0 = ``a``, 1 = ``b``) of at most ``n``
    items interleaved from rankings ``a`` and ``b`` (integer item ids best first, no repeats
    within one).

    Each round the team with fewer picks so far picks (a fair coin, ``rng.random() < 0.5``, when
    even): its best item not yet on the page. A team whose ranking is used up passes; the page ends at ``n`` items or when
    both are used up.

    With ``small`` (per team, the small creators' notes it may promote) the page follows the
    small-creator rule: when its first ``t`` items would hold fewer than ``floor(share * t)``
    of them, the team picks its best such note not yet on the page instead, if it has one
    (else its best, and the shortfall carries over). Either team's picks are still its own."""
    a, b = np.asarray(a).tolist(), np.asarray(b).tolist()
    on: set = set()
    items: list = []
    teams: list[int] = []
    at = [0, 0]
    count = [0, 0]
    lists = (a, b)
    n_small = 0
    while len(items) < n:
        for t in (0, 1):  # skip what the other team already put on the page
            while at[t] < len(lists[t]) and lists[t][at[t]] in on:
                at[t] += 1
        left = [at[0] < len(a), at[1] < len(b)]
        if not any(left):
            break
        if left[0] and left[1]:
            t = 0 if count[0] < count[1] else 1 if count[1] < count[0] else int(rng.random() < 0.5)
        else:
            t = 0 if left[0] else 1
        item = lists[t][at[t]]
        if small is not None and n_small < math.floor(share * (len(items) + 1) + 1e-9) and item not in small[t]:
            item = next((i for i in lists[t][at[t]:] if i in small[t] and i not in on), item)
        n_small += small is not None and item in small[t]
        items.append(item)
        teams.append(t)
        on.add(item)
        count[t] += 1
    return np.asarray(items, np.int64), np.asarray(teams, np.int8)


def page_outcome(teams: Sequence[int], clicked: Sequence[bool]) -> int:
    """+1 when team 1's notes got more clicks on the page, -1 when team 0's did, 0 for a tie
    (no click, or as many each)."""
    t = np.asarray(teams, np.int64)
    c = np.asarray(clicked, bool)
    if t.shape != c.shape:
        raise ValueError(f"teams {t.shape} and clicked {c.shape} must have one entry per shown note")
    one, zero = int((c & (t == 1)).sum()), int((c & (t == 0)).sum())
    return (one > zero) - (one < zero)


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact sign test: the probability, when wins and losses are equally likely, of a
    split at least as uneven as ``wins`` : ``losses`` (1.0 with no decided page)."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    # P(X <= k) for X ~ Binomial(n, 1/2), in logs (n may be thousands)
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2.0) for i in range(k + 1)]
    top = max(logs)
    tail = math.exp(top) * sum(math.exp(x - top) for x in logs)
    return float(min(1.0, 2.0 * tail))


def interleaving_verdict(pages: Sequence[Mapping[str, Any]], pages_needed: int = 1000, alpha: float = 0.05,
                         since_ts: float | None = None) -> dict[str, Any]:
    """The learned fusion against RRF from interleaved search pages (``teams``: the team of each
    shown note, :data:`TEAMS` names; ``items``: the note ids shown; ``clicked``: the engaged ones;
    ``ts``), oldest first: the first ``pages_needed`` interleaved pages with a click (from
    ``since_ts``) are counted. Until there are that many the verdict is ``"collecting"``; then
    it is ``"learned"`` or ``"rrf"`` (that team won more pages, sign test p < ``alpha``) or
    ``"no difference"``. Pages that are not interleaved (no ``teams``) are ignored."""
    wins = losses = ties = 0
    counted = 0
    last_ts = None
    for p in pages:
        teams = p.get("teams")
        clicked = p.get("clicked") or []
        if not teams or not clicked or (since_ts is not None and float(p.get("ts") or 0.0) < since_ts):
            continue
        shown = [str(n) for n in p.get("items") or []]
        if len(teams) != len(shown):
            continue  # a malformed row: not counted
        cset = {str(n) for n in clicked}
        t = [TEAMS.index(x) if x in TEAMS else -1 for x in teams]
        o = page_outcome(t, [n in cset for n in shown])
        wins += o > 0
        losses += o < 0
        ties += o == 0
        counted += 1
        last_ts = float(p.get("ts") or 0.0)
        if counted >= pages_needed:
            break
    pv = sign_test_p(wins, losses)
    if counted < pages_needed:
        verdict = "collecting"
    elif pv < alpha and wins != losses:
        verdict = TEAMS[1] if wins > losses else TEAMS[0]
    else:
        verdict = "no difference"
    decided = wins + losses
    return {"verdict": verdict, "pages": counted, "pages_needed": int(pages_needed), "learned_wins": wins,
            "rrf_wins": losses, "ties": ties, "p_value": pv, "alpha": alpha,
            "learned_win_share": wins / decided if decided else None, "until_ts": last_ts}


def verdict_from_log(log: Any, fusion: Any, pages_needed: int) -> dict[str, Any]:
    """:func:`interleaving_verdict` of the interleaved pages a search log
    (:class:`~notefeed.search.querylog.SearchLog`) holds since ``fusion`` (a
    :class:`~notefeed.search.fusion.LearnedFusion`) was trained (``meta["trained_at"]``; all of
    them without one)."""
    since = fusion.meta.get("trained_at")
    pages = log.pages(interleaved=True, since_ts=float(since) if isinstance(since, int | float) else None)
    return interleaving_verdict(pages, pages_needed)
