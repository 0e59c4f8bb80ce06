"""Text tasks through the one interface: title suggestions and query rewrites.

The built-in model (``prompt_style == "notes"``) is prompted in its training format
(``body [TITLE]``; a query's tags from its tag head); any other backend gets an instruction.
:class:`LLMRewriter` is a search rewrite backend (``rewrite/llm`` in
:data:`notefeed.search.base.REWRITERS`) over any :class:`~notefeed.llm.base.LanguageModel`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from notefeed.llm.base import LanguageModel, LLMError
from notefeed.llm.builtin import BuiltinLM
from notefeed.search.base import REWRITERS
from notefeed.search.text import normalise

__all__ = ["suggest_titles", "rewrite_query", "LLMRewriter", "workspace_model"]

_TITLE = ("Write {n} short, catchy titles for this note, one per line, nothing else.\nNote: {body}")
_REWRITE = ("Rewrite the search query for a lifestyle-notes search engine. Give up to {n} alternative "
            "queries with the same intent, one per line, nothing else.\nQuery: {q}")


def _lines(text: str) -> list[str]:
    return [x.strip().lstrip("-*0123456789.) \t").strip().strip('"') for x in text.splitlines() if x.strip()]


def suggest_titles(lm: LanguageModel, body: str, n: int = 3, max_tokens: int = 16) -> list[str]:
    """Up to ``n`` distinct title suggestions for a note body (greedy first, then sampled)."""
    if not isinstance(body, str) or not body.strip():
        raise LLMError("body: expected a non-empty string")
    out: list[str] = []
    if getattr(lm, "prompt_style", "chat") == "notes":
        prompt = f"{body} [TITLE]"
        out += lm.generate([prompt], max_tokens, stop=["[TAGS]"])
        for s in range(1, 3 * n):
            if len(out) >= n:
                break
            gen = lm.generate([prompt], max_tokens, temperature=0.8, stop=["[TAGS]"],
                              **({"seed": s} if isinstance(lm, BuiltinLM) else {}))
            out += gen
    else:
        out += _lines(lm.generate([_TITLE.format(n=n, body=body[:2000])], max_tokens * n)[0])
    seen: list[str] = []
    for t in out:
        if t and t not in seen:
            seen.append(t)
    return seen[:n]


def rewrite_query(lm: LanguageModel, query: str, n: int = 3, min_prob: float = 0.2) -> list[str]:
    """Up to ``n`` rewrites of ``query``, best first, never the query itself."""
    q = normalise(query)
    if not q:
        return []
    if isinstance(lm, BuiltinLM):
        cands = [t.replace("-", " ") for t, _ in lm.predict_tags([q], k=n, min_prob=min_prob)[0]]
    else:
        cands = _lines(lm.generate([_REWRITE.format(n=n, q=q)], 64)[0])
    out: list[str] = []
    for c in cands:
        c = normalise(c)
        if c and c != q and c not in out:
            out.append(c)
    return out[:n]


@REWRITERS.register("rewrite/llm")
class LLMRewriter:
    """Query rewrites from a language model, cached (LRU); see :func:`rewrite_query`."""

    name = "rewrite/llm"
    token_level = False

    def __init__(self, lm: LanguageModel, n: int = 3, cache_size: int = 10_000) -> None:
        self.lm, self.n, self.cache_size = lm, int(n), int(cache_size)
        self._cache: OrderedDict[str, list[str]] = OrderedDict()
        self._lock = threading.Lock()

    def rewrite(self, query: str) -> list[str]:
        with self._lock:
            if query in self._cache:
                self._cache.move_to_end(query)
                return list(self._cache[query])
        try:
            out = rewrite_query(self.lm, query, self.n)
        except LLMError:
            out = []
        with self._lock:
            self._cache[query] = out
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return list(out)


_MODELS: dict[str, tuple[float, BuiltinLM]] = {}


def workspace_model(workspace: str | Path) -> BuiltinLM | None:
    """The workspace's built-in model (``WORKSPACE/llm/model``, written by ``notefeed llm embed``),
    loaded once and again when its weights change; ``None`` when there is none."""
    f = Path(workspace) / "llm" / "model" / "model.safetensors"
    if not f.exists():
        return None
    key, mtime = str(f), f.stat().st_mtime
    hit = _MODELS.get(key)
    if hit is None or hit[0] != mtime:
        hit = (mtime, BuiltinLM.load(f.parent))
        _MODELS[key] = hit
    return hit[1]
