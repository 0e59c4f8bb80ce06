"""Text analysis shared by indexing and queries: one normalisation, one tokeniser.

Notes and queries go through the same steps, so a query token matches an index token:
NFKC (full-width letters and digits fold to ASCII, compatibility forms to their base), lower
case, whitespace collapsed, then :func:`notefeed.content.text.tokenize` (jieba for text with
CJK characters, word tokens otherwise; punctuation dropped). Multi-character Chinese words
also contribute their single characters (``grams``), so one-character queries find notes
whose segmentation put that character inside a longer word.
"""

from __future__ import annotations

import re
import unicodedata

import pandas as pd

from notefeed.content.text import has_cjk, tokenize
from notefeed.search.base import SearchError

__all__ = ["normalise", "check_query", "analyze", "cjk_grams", "note_fields", "FIELDS", "MAX_QUERY_CHARS"]

#: default longest accepted query, in characters (after NFKC); the API and config may lower it
MAX_QUERY_CHARS = 512
#: the indexed text fields of a note, in the order :func:`note_fields` returns them
FIELDS = ("title", "text", "tags", "author", "category")

_SPACE = re.compile(r"\s+")
_ALLOWED_CONTROL = {"\t", "\n", "\r"}


def normalise(text: str) -> str:
    """NFKC, lower case, runs of whitespace to one space, stripped."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


def check_query(q: object, max_chars: int = MAX_QUERY_CHARS, field: str = "q") -> str:
    """The normalised query, or :class:`SearchError` naming ``field``.

    Refused: a non-string, an empty or all-whitespace query, one longer than ``max_chars``
    characters, one holding control characters (other than tab and newlines) or unassigned
    / surrogate code points. A query of punctuation only is *accepted* (it finds nothing).
    """
    if not isinstance(q, str):
        raise SearchError(f"{field}: expected a string, got {type(q).__name__}")
    if len(q) > max_chars:  # checked before NFKC, which can grow a string
        raise SearchError(f"{field}: query too long ({len(q)} characters, at most {max_chars})")
    for pos, ch in enumerate(q):
        cat = unicodedata.category(ch)
        if (cat == "Cc" and ch not in _ALLOWED_CONTROL) or cat in ("Cs", "Cn"):
            raise SearchError(f"{field}: control or invalid character U+{ord(ch):04X} at position {pos}")
    text = normalise(q)
    if not text:
        raise SearchError(f"{field}: empty query")
    if len(text) > max_chars:
        raise SearchError(f"{field}: query too long after normalisation ({len(text)} characters, at most {max_chars})")
    return text


def analyze(text: str) -> list[str]:
    """Index/query tokens of ``text`` (normalised first)."""
    return tokenize(normalise(text))


def cjk_grams(tokens: list[str]) -> list[str]:
    """Single characters of the multi-character CJK tokens (in order, repeats kept)."""
    return [ch for t in tokens if len(t) > 1 and has_cjk(t) for ch in t]


def _join_tags(tags: object) -> str:
    if isinstance(tags, str):
        return tags
    try:
        return " ".join(str(t) for t in tags)  # type: ignore[union-attr]
    except TypeError:
        return ""


def note_fields(notes: pd.DataFrame) -> dict[str, list[str]]:
    """Raw text per field for a ``Dataset.notes``-shaped frame (missing columns are empty).

    ``author`` is the ``author_id`` unless the frame has an ``author`` (display name) column.
    """
    n = len(notes)

    def col(name: str) -> list[str]:
        if name not in notes.columns:
            return [""] * n
        return ["" if v is None or (isinstance(v, float) and v != v) else str(v) for v in notes[name].tolist()]

    author = col("author") if "author" in notes.columns else col("author_id")
    author = ["" if a == "unknown" else a for a in author]
    tags = [_join_tags(t) for t in notes["tags"].tolist()] if "tags" in notes.columns else [""] * n
    return {"title": col("title"), "text": col("text"), "tags": tags, "author": author,
            "category": col("category")}
