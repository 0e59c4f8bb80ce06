"""Hashed side-information features for the two-tower model (tags, category, author, text).

Every feature becomes a token string with a namespace prefix (``tag:``, ``cat:``, ``auth:``,
``w:``, ``attr:``) hashed into one shared bucket space with a stable hash (CRC32), so a new
note or user gets features without any vocabulary refit. Chinese text is cut with jieba,
other text into lower-cased word tokens.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable

import numpy as np
import pandas as pd

__all__ = ["tokenize_text", "hash_tokens", "note_side_tokens", "user_attr_tokens"]

_WORD = re.compile(r"\w+", re.UNICODE)
_CJK = re.compile(r"[\u4e00-\u9fff]")


def tokenize_text(text: str, max_chars: int = 300) -> list[str]:
    """Word tokens of ``text``: jieba for text containing Chinese, ``\\w+`` otherwise."""
    text = str(text)[:max_chars].lower()
    if not text:
        return []
    if _CJK.search(text):
        import jieba

        return [t for t in jieba.lcut(text) if _WORD.fullmatch(t)]
    return _WORD.findall(text)


def hash_tokens(tokens: Iterable[str], buckets: int, width: int) -> np.ndarray:
    """(width,) int64 bucket ids in [1, buckets] (0 pads), first ``width`` distinct tokens."""
    out = np.zeros(width, np.int64)
    seen: set[str] = set()
    n = 0
    for t in tokens:
        if t in seen:
            continue
        seen.add(t)
        out[n] = zlib.crc32(t.encode()) % buckets + 1
        n += 1
        if n == width:
            break
    return out


def note_side_tokens(notes: pd.DataFrame, buckets: int, width: int = 32) -> np.ndarray:
    """(n_notes, width) int64 hashed side tokens: tags, category, author, then title/text words."""
    for col in ("tags", "category", "author_id", "title", "text"):
        if col not in notes.columns:
            raise ValueError(f"note side info: missing column '{col}'")
    out = np.zeros((len(notes), width), np.int64)
    for r, (tags, cat, auth, title, text) in enumerate(
        zip(notes["tags"], notes["category"], notes["author_id"], notes["title"], notes["text"], strict=True)
    ):
        toks = [f"tag:{str(t).lower()}" for t in (tags if isinstance(tags, list | tuple | np.ndarray) else [])]
        if cat:
            toks.append(f"cat:{cat}")
        if auth and auth != "unknown":
            toks.append(f"auth:{auth}")
        toks += [f"w:{w}" for w in tokenize_text(f"{title} {text}")]
        out[r] = hash_tokens(toks, buckets, width)
    return out


def user_attr_tokens(users: pd.DataFrame, buckets: int, width: int = 8) -> np.ndarray:
    """(n_users, width) int64 hashed ``attr:<column>=<value>`` tokens of the user attribute columns."""
    cols = [c for c in users.columns if c != "user_id"]
    out = np.zeros((len(users), width), np.int64)
    if not cols:
        return out
    vals = users[cols].astype(str).to_numpy()
    for r in range(len(users)):
        out[r] = hash_tokens((f"attr:{c}={v}" for c, v in zip(cols, vals[r], strict=True) if v not in ("", "nan")),
                             buckets, width)
    return out
