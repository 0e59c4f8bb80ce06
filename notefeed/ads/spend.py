"""The day's campaign spend in Redis, shared by every serving worker.

With ``online.backend: redis`` (``notefeed serve --workers N``) each worker paces from the same
spend: a click is charged by :meth:`RedisSpendLedger.charge`, a Lua script that Redis runs
atomically, so "is the campaign still under budget?" and "add the price" are one step for all
workers together. A charge is made only while the day's spend is below the budget, so the
spend ends below budget + one click's price (the dearest click), however many workers charge
at once. A click that finds the budget spent is accepted and not charged (the advertiser does
not pay past the budget; the serving side stops showing the campaign on its next spend sync).

Keys: ``{prefix}:ads:spend:{day}``, a hash campaign id -> spend (``HINCRBYFLOAT``), ``day`` =
``floor(unix seconds / 86400)``, expiring after ``ttl_s`` (3 days).
"""

from __future__ import annotations

from typing import Any

__all__ = ["RedisSpendLedger", "DAY_S"]

DAY_S = 86400.0

# KEYS[1] the day's hash; ARGV: campaign id, cost, budget, ttl seconds.
# Returns {1 if charged else 0, the day's spend after the call (as a string: Lua numbers
# returned to Redis become integers)}.
_CHARGE = """
local spent = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if spent >= tonumber(ARGV[3]) then
  return {0, tostring(spent)}
end
local total = redis.call('HINCRBYFLOAT', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return {1, total}
"""


class RedisSpendLedger:
    """Campaign spend per day in one Redis hash; ``client`` a ``redis.Redis`` (any decoding)."""

    def __init__(self, client: Any, prefix: str = "nf", day_s: float = DAY_S, ttl_s: int = 3 * 86400) -> None:
        self.r, self.prefix, self.day_s, self.ttl_s = client, prefix, float(day_s), int(ttl_s)
        self._charge = client.register_script(_CHARGE)

    @classmethod
    def from_url(cls, url: str, prefix: str = "nf", **kw: Any) -> RedisSpendLedger:
        import redis

        return cls(redis.Redis.from_url(url, decode_responses=True), prefix, **kw)

    def key(self, now_s: float) -> str:
        return f"{self.prefix}:ads:spend:{int(now_s // self.day_s)}"

    def charge(self, campaign_id: str, cost: float, budget: float, now_s: float) -> tuple[bool, float]:
        """Add ``cost`` to the campaign's spend of the day of ``now_s`` if that spend is below
        ``budget``, atomically: (charged, the day's spend after the call)."""
        if cost < 0:
            raise ValueError(f"RedisSpendLedger.charge: cost must be >= 0, got {cost}")
        ok, total = self._charge(keys=[self.key(now_s)], args=[campaign_id, repr(float(cost)), repr(float(budget)),
                                                                  self.ttl_s])
        return bool(int(ok)), float(total)

    def spent(self, now_s: float) -> dict[str, float]:
        """Every campaign's spend of the day of ``now_s`` (one ``HGETALL``)."""
        raw = self.r.hgetall(self.key(now_s))
        return {(k.decode() if isinstance(k, bytes) else str(k)): float(v) for k, v in raw.items()}

    def close(self) -> None:
        try:
            self.r.close()
        except Exception:  # closing is best effort
            pass
