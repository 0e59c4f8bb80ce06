"""``llm/http``: any OpenAI-compatible endpoint (vLLM, llama.cpp server, Ollama, ``notefeed llm serve``).

``embed`` posts ``{base_url}/embeddings`` in batches of ``batch_size``; ``generate`` posts
``/chat/completions`` (one prompt a request) or, with ``api="completions"``, ``/completions``
(a batch of prompts a request). Each request has a ``timeout_s``; connection errors, 429 and
5xx answers are retried ``retries`` times with exponential backoff; other 4xx fail at once.
Every answer is cached on disk (``cache``: an SQLite file) keyed by model, prompt and options,
so a rerun of a batch job costs nothing for what it already asked. A :class:`Budget` caps one
job's requests and seconds; spending it raises :class:`BudgetExceeded` (answers so far stay cached).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from notefeed.llm.base import BACKENDS, BudgetExceeded, LLMError, check_texts
from notefeed.llm.cache import DiskCache, cache_key

if TYPE_CHECKING:
    import httpx

__all__ = ["Budget", "HttpLM"]


@dataclass
class Budget:
    """Per-job limits (``None``: unlimited) and what was spent."""

    max_requests: int | None = None
    max_seconds: float | None = None
    requests: int = 0
    started: float = field(default_factory=time.monotonic)

    def spend(self) -> None:
        if self.max_requests is not None and self.requests >= self.max_requests:
            raise BudgetExceeded(f"budget: max_requests={self.max_requests} spent")
        if self.max_seconds is not None and time.monotonic() - self.started > self.max_seconds:
            raise BudgetExceeded(f"budget: max_seconds={self.max_seconds} spent")
        self.requests += 1


@BACKENDS.register("llm/http")
class HttpLM:
    """See the module docstring. ``model`` is sent as the request's ``model`` field."""

    name = "llm/http"
    prompt_style = "chat"

    def __init__(self, base_url: str, model: str = "default", api_key: str | None = None, timeout_s: float = 30.0,
                 retries: int = 3, backoff_s: float = 0.5, batch_size: int = 64, api: str = "chat",
                 cache: str | Path | None = None, budget: Budget | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise LLMError(f"base_url: expected an http(s) URL, got {base_url!r}")
        if api not in ("chat", "completions"):
            raise LLMError(f"api: 'chat' or 'completions', got {api!r}")
        if batch_size < 1 or retries < 0 or timeout_s <= 0:
            raise LLMError("batch_size >= 1, retries >= 0 and timeout_s > 0 are required")
        self.base_url, self.model, self.api = base_url.rstrip("/"), model, api
        self.retries, self.backoff_s, self.batch_size = int(retries), float(backoff_s), int(batch_size)
        self.cache = DiskCache(cache) if cache is not None else None
        self.budget = budget or Budget()
        import httpx  # here, not at import: `notefeed serve` starts without it

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout_s, headers=headers, transport=transport)
        self.requests = self.retried = 0
        self._dim: int | None = None

    # ------------------------------------------------------------------ transport
    def _post(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        for attempt in range(self.retries + 1):
            self.budget.spend()
            self.requests += 1
            try:
                r = self._client.post(f"{self.base_url}{route}", json=body)
            except httpx.TransportError as e:  # connect, read timeout, reset
                err = f"{type(e).__name__}: {e}"
            else:
                if r.status_code == 200:
                    try:
                        return r.json()
                    except ValueError as e:
                        raise LLMError(f"{route}: answer is not JSON ({e})") from None
                err = f"HTTP {r.status_code}: {r.text[:200]}"
                if r.status_code != 429 and r.status_code < 500:
                    raise LLMError(f"{route}: {err}")
            if attempt == self.retries:
                raise LLMError(f"{route}: failed after {self.retries + 1} attempts ({err})")
            self.retried += 1
            time.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    def _cached(self, kind: str, texts: list[str], opts: dict[str, Any]) -> tuple[list[Any], list[int], list[str]]:
        keys = [cache_key(kind, self.model, t, opts) for t in texts]
        got = [self.cache.get(k) if self.cache is not None else None for k in keys]
        return got, [i for i, g in enumerate(got) if g is None], keys

    # ------------------------------------------------------------------ protocol
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, d) float32 unit rows from ``/embeddings``, ``batch_size`` texts a request."""
        ts = check_texts(texts)
        got, todo, keys = self._cached("embed", ts, {})
        for lo in range(0, len(todo), self.batch_size):
            rows = todo[lo : lo + self.batch_size]
            ans = self._post("/embeddings", {"model": self.model, "input": [ts[i] for i in rows]})
            try:
                data = sorted(ans["data"], key=lambda d: d["index"])
                vecs = [list(map(float, d["embedding"])) for d in data]
            except (KeyError, TypeError, ValueError) as e:
                raise LLMError(f"/embeddings: malformed answer ({e})") from None
            if len(vecs) != len(rows):
                raise LLMError(f"/embeddings: {len(vecs)} vectors for {len(rows)} inputs")
            for i, v in zip(rows, vecs, strict=True):
                got[i] = v
                if self.cache is not None:
                    self.cache.put(keys[i], v)
        if not ts:
            return np.zeros((0, self._dim or 0), np.float32)
        z = np.asarray(got, np.float32)
        self._dim = z.shape[1]
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)

    def generate(self, prompts: Sequence[str], max_tokens: int = 32, *, temperature: float = 0.0,
                 stop: Sequence[str] | None = None) -> list[str]:
        ps = check_texts(prompts, "prompts")
        opts = {"max_tokens": int(max_tokens), "temperature": float(temperature), "stop": list(stop or []),
                "api": self.api}
        got, todo, keys = self._cached("generate", ps, opts)
        extra = {"max_tokens": int(max_tokens), "temperature": float(temperature), **({"stop": list(stop)} if stop else {})}
        if self.api == "completions":
            for lo in range(0, len(todo), self.batch_size):
                rows = todo[lo : lo + self.batch_size]
                ans = self._post("/completions", {"model": self.model, "prompt": [ps[i] for i in rows], **extra})
                try:
                    texts = [str(c["text"]) for c in sorted(ans["choices"], key=lambda c: c["index"])]
                except (KeyError, TypeError) as e:
                    raise LLMError(f"/completions: malformed answer ({e})") from None
                if len(texts) != len(rows):
                    raise LLMError(f"/completions: {len(texts)} choices for {len(rows)} prompts")
                for i, t in zip(rows, texts, strict=True):
                    got[i] = t
                    if self.cache is not None:
                        self.cache.put(keys[i], t)
        else:
            for i in todo:
                ans = self._post("/chat/completions", {"model": self.model, **extra,
                                                       "messages": [{"role": "user", "content": ps[i]}]})
                try:
                    got[i] = str(ans["choices"][0]["message"]["content"])
                except (KeyError, TypeError, IndexError) as e:
                    raise LLMError(f"/chat/completions: malformed answer ({e})") from None
                if self.cache is not None:
                    self.cache.put(keys[i], got[i])
        return [str(g) for g in got]

    def close(self) -> None:
        self._client.close()
        if self.cache is not None:
            self.cache.close()
