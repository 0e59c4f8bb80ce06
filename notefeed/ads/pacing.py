"""Budget pacing: spend a campaign's daily budget evenly over the day.

:class:`PidPacer` throttles participation: each campaign has a pass-through probability that
a PID controller (multiplicative: it acts on log p) on the spend error (target spend so far = budget x elapsed share of the day,
minus actual spend, as a share of the budget) raises when behind and lowers when ahead. The
hard guard refuses a campaign whose remaining budget is not positive, and a charge is capped
at the bid, so a campaign overspends by less than one click's cost at most.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["PidPacer", "PidGains"]

DAY_S = 86400.0


@dataclass
class PidGains:
    kp: float = 3.0
    ki: float = 1.0
    kd: float = 0.0
    p_min: float = 1e-4
    p_start: float = 0.05


@dataclass
class _State:
    budget: float
    spent: float = 0.0
    p: float = 0.05
    integral: float = 0.0
    last_err: float = 0.0
    last_t: float = 0.0
    day: int = -1


class PidPacer:
    """Per-campaign throttle; ``budgets`` campaign id -> daily budget; ``day_s`` the day length."""

    name = "pacing/pid"

    def __init__(self, budgets: dict[str, float], gains: PidGains | None = None, day_s: float = DAY_S,
                 update_s: float = 60.0) -> None:
        self.g = gains or PidGains()
        self.day_s, self.update_s = float(day_s), float(update_s)
        self.state: dict[str, _State] = {c: _State(float(b), p=self.g.p_start) for c, b in budgets.items()}

    def _roll(self, s: _State, now_s: float) -> None:
        day = int(now_s // self.day_s)
        if day != s.day:
            s.day, s.spent, s.integral, s.last_err, s.last_t, s.p = day, 0.0, 0.0, 0.0, day * self.day_s, self.g.p_start

    def sync_budgets(self, budgets: dict[str, float]) -> None:
        """Add new campaigns, update changed budgets (spend so far is kept), drop removed ones."""
        for c, b in budgets.items():
            if c in self.state:
                self.state[c].budget = float(b)
            else:
                self.state[c] = _State(float(b), p=self.g.p_start)
        for c in set(self.state) - set(budgets):
            del self.state[c]

    def to_json(self) -> dict[str, dict[str, float]]:
        """Each campaign's day, spend and controller state (``load_json`` restores it)."""
        return {c: {"day": s.day, "spent": s.spent, "p": s.p, "integral": s.integral, "last_err": s.last_err,
                    "last_t": s.last_t} for c, s in self.state.items()}

    def load_json(self, saved: dict[str, dict[str, float]]) -> None:
        """Restore the state of the campaigns this pacer has (a restart keeps the day's spend)."""
        for c, d in saved.items():
            s = self.state.get(c)
            if s is None:
                continue
            s.day, s.spent, s.p = int(d["day"]), float(d["spent"]), float(d["p"])
            s.integral, s.last_err, s.last_t = float(d["integral"]), float(d["last_err"]), float(d["last_t"])

    def spent(self, campaign_id: str, now_s: float) -> float:
        """Spend of the current day (0 on a new day)."""
        s = self.state[campaign_id]
        self._roll(s, now_s)
        return s.spent

    def remaining(self, campaign_id: str) -> float:
        s = self.state[campaign_id]
        return s.budget - s.spent

    def _update(self, s: _State, now_s: float) -> None:
        if now_s - s.last_t < self.update_s:
            return
        frac = (now_s - s.day * self.day_s) / self.day_s
        err = (s.budget * frac - s.spent) / s.budget
        dt = (now_s - s.last_t) / self.day_s
        s.integral = min(1.0, max(-1.0, s.integral + err * dt))  # plain floats: this runs per bid
        deriv = (err - s.last_err) / max(dt, 1e-9)
        # multiplicative step: the pass rate spans orders of magnitude across campaigns
        step = self.g.kp * err + self.g.ki * s.integral + self.g.kd * deriv * dt
        s.p = min(1.0, max(self.g.p_min, s.p * math.exp(min(1.0, max(-1.0, step)))))
        s.last_err, s.last_t = err, now_s

    def allow(self, campaign_id: str, now_s: float, rng: np.random.Generator) -> bool:
        s = self.state[campaign_id]
        self._roll(s, now_s)
        if s.spent >= s.budget:
            return False
        self._update(s, now_s)
        return bool(rng.random() < s.p)

    def observe_spent(self, campaign_id: str, spent: float, now_s: float) -> None:
        """The day's spend as kept elsewhere (shared by several pacers, e.g. in Redis): it only
        grows within a day, so the larger of it and this pacer's own figure is kept."""
        s = self.state.get(campaign_id)
        if s is None:
            return
        self._roll(s, now_s)
        s.spent = max(s.spent, float(spent))

    def record(self, campaign_id: str, cost: float, now_s: float) -> None:
        s = self.state[campaign_id]
        self._roll(s, now_s)
        s.spent += float(cost)
