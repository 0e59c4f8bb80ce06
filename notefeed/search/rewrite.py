"""Query rewriting: rewrites mined from a query log, and an OpenAI-compatible HTTP backend.

Mining (:func:`mine_rewrites`) reads a query log (``user_id``, ``query``, ``ts`` and, when
known, ``clicked``: the note id clicked for that query or empty) and counts two signals:

- *reformulations*: the same user types query B within ``session_s`` seconds after query A,
  A got no click and B did: A -> B;
- *co-clicks*: A and B led to clicks on the same notes: A -> B when B has more clicks, scored
  by the number of shared clicked notes.

:class:`HttpRewriteBackend` asks a chat-completions endpoint (a local vLLM or llama.cpp
server) for rewrites. It is off unless configured, caches every answer, and never blocks a
search: a query not in the cache is sent in the background and the search goes on without
rewrites if the answer is not there within ``wait_s`` (the next identical query uses it).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, OrderedDict, defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import pandas as pd

from notefeed.search.base import REWRITERS, SearchError
from notefeed.search.text import normalise

log = logging.getLogger(__name__)

__all__ = ["mine_rewrites", "MinedRewrites", "HttpRewriteBackend"]


def mine_rewrites(log_df: pd.DataFrame, session_s: int = 300, min_count: int = 1,
                  top: int = 3) -> dict[str, list[tuple[str, float]]]:
    """Query -> [(rewrite, score), ...] best first, from a query log (see the module docstring)."""
    for col in ("user_id", "query", "ts"):
        if col not in log_df.columns:
            raise SearchError(f"query log: missing column '{col}'")
    df = log_df.copy()
    df["query"] = [normalise(str(q)) for q in df["query"].tolist()]
    clicked = df["clicked"].fillna("").astype(str) if "clicked" in df.columns else pd.Series([""] * len(df))
    df["clicked"] = clicked.to_numpy()
    df = df[df["query"] != ""].sort_values(["user_id", "ts"], kind="stable")
    score: Counter[tuple[str, str]] = Counter()
    # one row per (user, query, ts): a query "got a click" when any of its rows has one
    g = df.groupby(["user_id", "ts", "query"], sort=False)["clicked"].agg(lambda s: any(s != "")).reset_index()
    g = g.sort_values(["user_id", "ts"], kind="stable")
    u, q, t, c = (g[k].tolist() for k in ("user_id", "query", "ts", "clicked"))
    for j in range(1, len(g)):
        if u[j] == u[j - 1] and q[j] != q[j - 1] and 0 <= t[j] - t[j - 1] <= session_s and c[j] and not c[j - 1]:
            score[(q[j - 1], q[j])] += 1
    clicks = df[df["clicked"] != ""]
    by_note: dict[str, set[str]] = defaultdict(set)
    n_clicks: Counter[str] = Counter(clicks["query"].tolist())
    for qq, note in zip(clicks["query"].tolist(), clicks["clicked"].tolist(), strict=True):
        by_note[note].add(qq)
    for qs in by_note.values():
        if 1 < len(qs) <= 50:  # a note clicked from very many queries says little about any pair
            for a in qs:
                for b in qs:
                    if a != b and n_clicks[b] > n_clicks[a]:
                        score[(a, b)] += 1
    out: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for (a, b), s in score.items():
        if s >= min_count:
            out[a].append((b, float(s)))
    return {a: sorted(v, key=lambda x: (-x[1], x[0]))[:top] for a, v in out.items()}


@REWRITERS.register("rewrite/mined")
class MinedRewrites:
    """A rewrite table (from :func:`mine_rewrites`) as a backend; saved as JSON."""

    name = "rewrite/mined"
    #: a query missing from the table is rewritten word by word through it
    token_level = True

    def __init__(self, table: dict[str, list[tuple[str, float]]] | None = None) -> None:
        self.table = dict(table or {})

    def rewrite(self, query: str) -> list[str]:
        return [b for b, _ in self.table.get(query, ())]

    def __len__(self) -> int:
        return len(self.table)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({a: [[b, s] for b, s in v] for a, v in self.table.items()},
                                         ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> MinedRewrites:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls({str(a): [(str(b), float(s)) for b, s in v] for a, v in raw.items()})
        except (ValueError, TypeError, AttributeError) as e:
            raise SearchError(f"{path}: corrupt rewrite table ({e})") from None


_PROMPT = ("Rewrite the search query for a lifestyle-notes search engine. Give up to {n} alternative "
           "queries with the same intent (synonyms, corrected spelling, more common wording), one per line, "
           "nothing else.\nQuery: {q}")


@REWRITERS.register("rewrite/http")
class HttpRewriteBackend:
    """Rewrites from an OpenAI-compatible ``POST {base_url}/chat/completions`` endpoint.

    ``timeout_s`` bounds the HTTP call (in a background thread); ``wait_s`` is how long a
    search waits for an answer not yet cached (0: never waits). Failures are cached for
    ``error_ttl_s`` so a dead endpoint costs nothing per query.
    """

    name = "rewrite/http"

    def __init__(self, base_url: str, model: str = "default", api_key: str | None = None,
                 timeout_s: float = 2.0, wait_s: float = 0.0, cache_size: int = 10_000,
                 max_rewrites: int = 3, error_ttl_s: float = 60.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise SearchError(f"base_url: expected an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model, self.api_key = model, api_key
        self.timeout_s, self.wait_s = float(timeout_s), float(wait_s)
        self.cache_size, self.max_rewrites, self.error_ttl_s = cache_size, max_rewrites, error_ttl_s
        self._cache: OrderedDict[str, tuple[float, list[str]]] = OrderedDict()  # q -> (expires, rewrites)
        self._pending: dict[str, Future[list[str]]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="rewrite-http")
        self.calls = self.errors = 0

    def _ask(self, query: str) -> list[str]:
        import httpx

        self.calls += 1
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"model": self.model, "temperature": 0.0, "max_tokens": 64,
                "messages": [{"role": "user", "content": _PROMPT.format(n=self.max_rewrites, q=query)}]}
        r = httpx.post(f"{self.base_url}/chat/completions", json=body, headers=headers, timeout=self.timeout_s)
        r.raise_for_status()
        text = r.json()["choices"][0]["message"]["content"]
        out: list[str] = []
        for line in str(text).splitlines():
            cand = normalise(line.lstrip("-*0123456789.) \t"))
            if cand and cand != query and cand not in out and len(cand) <= 200:
                out.append(cand)
        return out[: self.max_rewrites]

    def _done(self, query: str, fut: Future[list[str]]) -> None:
        try:
            ttl, rewrites = float("inf"), fut.result()
        except Exception as e:  # network, HTTP status, malformed JSON: no rewrites for a while
            self.errors += 1
            log.warning("rewrite/http: %s failed for %r: %s", self.base_url, query, e)
            ttl, rewrites = self.error_ttl_s, []
        with self._lock:
            self._pending.pop(query, None)
            self._cache[query] = (time.monotonic() + ttl, rewrites)
            self._cache.move_to_end(query)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def rewrite(self, query: str) -> list[str]:
        with self._lock:
            hit = self._cache.get(query)
            if hit is not None and hit[0] > time.monotonic():
                self._cache.move_to_end(query)
                return list(hit[1])
            fut = self._pending.get(query)
            if fut is None:
                fut = self._pool.submit(self._ask, query)
                self._pending[query] = fut
                fut.add_done_callback(lambda f, q=query: self._done(q, f))
        if self.wait_s <= 0:
            return []
        try:
            return list(fut.result(timeout=self.wait_s))
        except FutureTimeout:
            return []
        except Exception:  # already logged and cached by _done
            return []

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
