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

:class:`RedisImpressions` keeps the served impressions there too (``{prefix}:ads:imp:{id}``, a
hash expiring with the impression's TTL), so a click sent to any worker, or after a restart,
finds its impression, and the first click is claimed once for all workers (``HSETNX`` in a
script that refuses an unknown impression).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["RedisSpendLedger", "RedisImpressions", "DAY_S"]

DAY_S = 86400.0



def _charge_lua(key: str, campaign: str, cost: str, budget: str, ttl: str, refused: int, charged: int) -> str:
    """The check-and-add both scripts end with (one text, so the two cannot drift apart): add
    ``cost`` to the campaign's spend in hash ``key`` only while that spend is below ``budget``;
    returns ``{refused | charged, the spend after the call}`` (as a string: Lua numbers returned
    to Redis become integers). The arguments are Lua expressions (``KEYS[1]``, ``ARGV[2]``, ...)."""
    return f"""
local spent = tonumber(redis.call('HGET', {key}, {campaign}) or '0')
if spent >= tonumber({budget}) then
  return {{{refused}, tostring(spent)}}
end
local total = redis.call('HINCRBYFLOAT', {key}, {campaign}, {cost})
redis.call('EXPIRE', {key}, tonumber({ttl}))
return {{{charged}, total}}
"""


# KEYS[1] the day's hash; ARGV: campaign id, cost, budget, ttl seconds. Returns {1 if charged else 0, the day's spend}.
_CHARGE = _charge_lua("KEYS[1]", "ARGV[1]", "ARGV[2]", "ARGV[3]", "ARGV[4]", refused=0, charged=1)


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


# KEYS[1] the impression's hash, KEYS[2] the day's spend hash; ARGV: flag (clicked | converted),
# campaign id, cost, budget (< 0: claim without charging), spend ttl seconds. Returns {code, the
# day's spend as a string}: -1 unknown or expired impression, -2 a conversion before any click,
# 0 the flag was set before (a repeated click or conversion), 1 set now without a charge (a
# conversion, or budget < 0), 2 a first click that found the budget spent (not charged), 3 a first
# click charged. Claim and charge are one step, so a Redis error leaves neither done (the client's
# retry is charged) and two workers given the same click charge it once.
_EVENT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1, '0'}
end
if ARGV[1] == 'converted' then
  if redis.call('HEXISTS', KEYS[1], 'clicked') == 0 then
    return {-2, '0'}
  end
  return {redis.call('HSETNX', KEYS[1], 'converted', '1'), '0'}
end
if redis.call('HSETNX', KEYS[1], 'clicked', '1') == 0 then
  return {0, '0'}
end
if tonumber(ARGV[4]) < 0 then
  return {1, '0'}
end
""" + _charge_lua("KEYS[2]", "ARGV[2]", "ARGV[3]", "ARGV[4]", "ARGV[5]", refused=2, charged=3)


class RedisImpressions:
    """Served ad impressions shared by every worker (``{prefix}:ads:imp:{id}``, expiring after
    ``ttl_s``): ``put`` when a page is served; ``get`` and ``event`` when a click or conversion
    arrives at any worker, or after a restart. Charges go to ``ledger``'s day hash."""

    FIELDS = ("ad_id", "campaign_id", "price", "user_id", "ts", "query")

    def __init__(self, ledger: RedisSpendLedger, ttl_s: float = 86400.0) -> None:
        self.ledger, self.r, self.ttl_s = ledger, ledger.r, max(1, int(ttl_s))
        self._event = self.r.register_script(_EVENT)

    def key(self, imp_id: str) -> str:
        return f"{self.ledger.prefix}:ads:imp:{imp_id}"

    def put(self, records: dict[str, dict[str, Any]]) -> None:
        """Store ``{impression id: record}`` (one round trip for the page)."""
        pipe = self.r.pipeline(transaction=False)
        for i, rec in records.items():
            pipe.hset(self.key(i), mapping={f: "" if rec.get(f) is None else str(rec[f]) for f in self.FIELDS})
            pipe.expire(self.key(i), self.ttl_s)
        pipe.execute()

    def blank_user(self, imp_ids: Iterable[str]) -> None:
        """Blank the user of the stored impressions ``imp_ids`` (an erased user); one missing or
        expired is left missing."""
        pipe = self.r.pipeline(transaction=False)
        for i in imp_ids:
            pipe.eval("if redis.call('exists', KEYS[1]) == 1 then redis.call('hset', KEYS[1], 'user_id', '') end",
                      1, self.key(i))
        pipe.execute()

    def get(self, imp_id: str) -> dict[str, Any] | None:
        """The stored record (``ad_id``, ``campaign_id``, ``price``, ``user_id``, ``ts``, ``query``), or None."""
        raw = self.r.hgetall(self.key(imp_id))
        if not raw:
            return None
        d = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
             for k, v in raw.items()}
        try:
            return {"ad_id": d["ad_id"], "campaign_id": d["campaign_id"], "price": float(d["price"]),
                    "user_id": d.get("user_id", ""), "ts": float(d["ts"]), "query": d.get("query") or None}
        except (KeyError, ValueError):
            return None

    def event(self, imp_id: str, flag: str, campaign_id: str, cost: float, budget: float, now_s: float
              ) -> tuple[int, float]:
        """Claim ``flag`` (``clicked`` / ``converted``) once for all workers and, for a first
        click, charge ``cost`` while the day's spend is below ``budget`` (< 0: no charge), in
        one atomic step: (code, the day's spend); codes as in ``_EVENT``."""
        if flag not in ("clicked", "converted"):
            raise ValueError(f"RedisImpressions.event: flag must be clicked or converted, got {flag!r}")
        code, total = self._event(keys=[self.key(imp_id), self.ledger.key(now_s)],
                                  args=[flag, campaign_id, repr(float(cost)), repr(float(budget)), self.ledger.ttl_s])
        return int(code), float(total)
