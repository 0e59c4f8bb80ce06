"""Run a policy against the environment and measure online effects.

Metrics: clicks / likes / collects per impression, mean dwell, small-creator exposure share
(creators under 1,000 followers at the start), creator-exposure Gini, intra-list topic diversity,
user interest coverage (share of a user's true long-term interests shown so far), new-note
exposure and cold-start speed (steps from publication to a note's first click).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from notefeed.eval.metrics import gini  # one definition of the coefficient, shared with eval
from notefeed.schema import SMALL_CREATOR_FOLLOWERS
from notefeed.sim.env import SimEnvironment
from notefeed.sim.policies import Policy

__all__ = ["run_closed_loop", "gini", "intra_list_diversity"]


def intra_list_diversity(topics: list[np.ndarray]) -> float:
    """Mean over pages of the share of item pairs with different topics (pages of 1 skipped)."""
    vals = []
    for t in topics:
        n = len(t)
        if n < 2:
            continue
        same = (t[:, None] == t[None, :]).sum() - n
        vals.append(1.0 - same / (n * (n - 1)))
    return float(np.mean(vals)) if vals else 0.0


def run_closed_loop(env: SimEnvironment, policy: Policy, steps: int, requests_per_step: int = 100,
                    page_size: int = 10, step_seconds: int = 600, new_notes_per_step: int = 0,
                    progress: Callable[[int], None] | None = None, impression_target: int = 100) -> dict:
    """Run ``steps`` rounds of ``requests_per_step`` page requests; return metrics and a per-step series.

    Each step: optionally publish ``new_notes_per_step`` notes, sample requests by activity, ask the
    policy for each page, let users react, feed the events back to ``policy.observe``, advance the clock.
    Cold-start speed: steps (and simulated minutes) from a new note's publication to its first click and
    to ``impression_target`` impressions, and click-through of new vs catalogue notes.
    """
    for name, v in (("steps", steps), ("requests_per_step", requests_per_step), ("page_size", page_size)):
        if not isinstance(v, int) or v <= 0:
            raise ValueError(f"run_closed_loop: {name} must be a positive integer, got {v!r}")
    w0 = env.world
    n0 = w0.n_notes
    n_creators = w0.n_creators
    interest = w0.user_interest > 0  # (U, K) true long-term interests
    covered = np.zeros_like(interest)
    served = np.zeros(env.n_users, bool)
    exposure = np.zeros(n_creators, np.int64)
    small = env.initial_followers < SMALL_CREATOR_FOLLOWERS
    tot = {"impression": 0, "click": 0, "like": 0, "collect": 0, "comment": 0, "share": 0, "hide": 0}
    dwell_sum, n_small, n_new_imp, divs = 0.0, 0, 0, []
    published_at: dict[int, int] = {}
    first_click: dict[int, int] = {}
    new_imp: dict[int, int] = {}
    reached: dict[int, int] = {}
    n_new_clicks = 0
    series = []
    t_policy = t_env = 0.0
    for step in range(steps):
        for i in env.publish(new_notes_per_step).tolist():
            published_at[i] = step
        users = env.sample_requests(requests_per_step)
        t0 = time.perf_counter()
        pages = [np.asarray(policy.recommend(env, int(u), page_size), np.int64)[:page_size] for u in users.tolist()]
        t1 = time.perf_counter()
        events = env.respond_batch(users, pages)
        t2 = time.perf_counter()
        policy.observe(events)
        t_policy += (t1 - t0) + (time.perf_counter() - t2)
        t_env += t2 - t1
        w = env.world
        types = events["type"].to_numpy()
        items = events["item"].to_numpy()
        imp = items[types == "impression"]
        step_counts = {k: int((types == k).sum()) for k in tot}
        for k, v in step_counts.items():
            tot[k] += v
        dwell_sum += float(np.nansum(events["dwell_s"].to_numpy()[types == "click"]))
        authors = w.note_creator[imp]
        exposure += np.bincount(authors, minlength=n_creators)
        step_small = int(small[authors].sum())
        n_small += step_small
        is_new = imp >= n0  # published notes are appended after the initial catalogue
        n_new_imp += int(is_new.sum())
        for i in items[types == "click"].tolist():
            if i in published_at and i not in first_click:
                first_click[i] = step - published_at[i]
        n_new_clicks += int((items[types == "click"] >= n0).sum())
        # the step's impressions count as served during the step: reaching the target here takes step+1 steps
        for i, c in zip(*np.unique(imp[is_new], return_counts=True), strict=True):
            i = int(i)
            new_imp[i] = new_imp.get(i, 0) + int(c)
            if new_imp[i] >= impression_target and i not in reached:
                reached[i] = step + 1 - published_at.get(i, step)
        page_topics = [w.note_topic[p] for p in pages]
        step_div = intra_list_diversity(page_topics)
        divs.append(step_div)
        flat_u = np.repeat(users, [len(p) for p in pages])
        flat_t = w.note_topic[np.concatenate(pages)] if pages else np.zeros(0, np.int64)
        covered[flat_u, flat_t] = True
        served[users] = True
        cov = (covered[served] & interest[served]).sum(axis=1) / interest[served].sum(axis=1)
        n_imp = max(step_counts["impression"], 1)
        series.append({
            "step": step,
            "ctr": step_counts["click"] / n_imp,
            "like_rate": step_counts["like"] / n_imp,
            "small_creator_share": step_small / n_imp,
            "diversity": step_div,
            "interest_coverage": float(cov.mean()) if len(cov) else 0.0,
            "new_note_share": int(is_new.sum()) / n_imp,
        })
        env.advance(step_seconds)
        if progress is not None:
            progress(1)
    n_imp = max(tot["impression"], 1)
    n_pub = len(published_at)
    delays = np.array(list(first_click.values()), float)
    reach = np.array(list(reached.values()), float)
    # policies may report their own figures (e.g. the cold-start boost's CTR) through ``metrics()``;
    # they come first so that they can never overwrite the loop's own metrics
    extra = policy.metrics() if callable(getattr(policy, "metrics", None)) else {}  # type: ignore[attr-defined]
    return {
        **extra,
        "policy": policy.name,
        "steps": steps,
        "requests": steps * requests_per_step,
        "impressions": tot["impression"],
        "ctr": tot["click"] / n_imp,
        "like_rate": tot["like"] / n_imp,
        "collect_rate": tot["collect"] / n_imp,
        "comment_rate": tot["comment"] / n_imp,
        "share_rate": tot["share"] / n_imp,
        "hide_rate": tot["hide"] / n_imp,
        "mean_dwell_s": dwell_sum / max(tot["click"], 1),
        "small_creator_share": n_small / n_imp,
        "creator_gini": gini(exposure),
        "creators_exposed": int((exposure > 0).sum()),
        "diversity": float(np.mean(divs)) if divs else 0.0,
        "interest_coverage": series[-1]["interest_coverage"] if series else 0.0,
        "new_note_share": n_new_imp / n_imp,
        "new_notes": n_pub,
        "new_notes_clicked_share": len(first_click) / n_pub if n_pub else float("nan"),
        "new_note_steps_to_first_click": float(np.median(delays)) if len(delays) else float("nan"),
        "new_notes_exposed_share": len(new_imp) / n_pub if n_pub else float("nan"),
        "new_note_ctr": n_new_clicks / max(n_new_imp, 1),
        "old_note_ctr": (tot["click"] - n_new_clicks) / max(tot["impression"] - n_new_imp, 1),
        "impression_target": impression_target,
        "new_notes_reached_target_share": len(reached) / n_pub if n_pub else float("nan"),
        "new_note_steps_to_target": float(np.median(reach)) if len(reach) else float("nan"),
        "new_note_minutes_to_target": float(np.median(reach)) * step_seconds / 60 if len(reach) else float("nan"),
        "new_note_mean_impressions": sum(new_imp.values()) / n_pub if n_pub else float("nan"),
        "policy_s": t_policy,
        "env_s": t_env,
        "series": series,
    }


def series_frame(result: dict) -> pd.DataFrame:
    """The per-step series of a :func:`run_closed_loop` result as a frame."""
    return pd.DataFrame(result["series"])
