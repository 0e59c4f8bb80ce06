"""Text analysis shared by indexing and queries: one normalisation, one tokeniser.

Notes and queries go through the same steps, so a query token matches an index token:
NFKC (full-width letters and digits fold to ASCII, compatibility forms to their base), lower
case, whitespace collapsed, then :func:`notefeed.content.text.tokenize` (jieba for text with
CJK characters, word tokens otherwise; punctuation dropped). Multi-character Chinese words
also contribute their single characters (``grams``, made with a catalogue's tokens by
:mod:`notefeed.search.tokens`), so one-character queries find notes whose segmentation put
that character inside a longer word.

Speed without changing a token: :func:`analyze_many` normalises a whole batch of strings in
one pass (joined by NUL, which NFKC, lower-casing and the whitespace rule all leave as a
boundary), takes word tokens of CJK-free strings with one regex, and segments CJK strings
the way jieba does, block by block (``jieba.re_han_default`` splits a text into blocks that
jieba cuts independently), with each block's tokens cached (:data:`BLOCK_CACHE_MAX` blocks;
a process that adds words to jieba's dictionary must call :func:`clear_caches`). A batch's new
han blocks are cut together by :func:`notefeed.search.segment.cut_pure_han` (jieba's DAG,
route and HMM as array operations over all of them).
"""

from __future__ import annotations

import re
import unicodedata

import pandas as pd

from notefeed.content.text import _jieba
from notefeed.search.base import SearchError
from notefeed.search.segment import PURE_HAN, clear_tables, cut_pure_han

__all__ = ["normalise", "normalise_many", "check_query", "analyze", "analyze_many", "analyze_batch",
           "tokens_normalised", "PARALLEL_MIN_CHARS", "tokens_of", "clear_caches",
           "note_fields", "FIELDS", "MAX_QUERY_CHARS", "BLOCK_CACHE_MAX", "BATCH_MIN_CHARS"]

#: default longest accepted query, in characters (after NFKC); the API and config may lower it
MAX_QUERY_CHARS = 512
#: the indexed text fields of a note, in the order :func:`note_fields` returns them
FIELDS = ("title", "text", "tags", "author", "category")

_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+", re.UNICODE)  # the word rule of notefeed.content.text.tokenize
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")  # as notefeed.content.text.has_cjk
_ALLOWED_CONTROL = {"\t", "\n", "\r"}
_SEP = "\x00"
#: most jieba blocks whose tokens are kept; the cache
#: is emptied when it reaches this size
BLOCK_CACHE_MAX = 1_000_000
_BLOCKS: dict[str, tuple[str, ...]] = {}
#: segment CJK text in worker processes only above this many uncached characters
PARALLEL_MIN_CHARS = 1_000_000
#: cut new pure-han blocks together (:mod:`notefeed.search.segment`) from this many characters;
#: fewer (a published note) one by one, without the array set-up
BATCH_MIN_CHARS = 2_000


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


def clear_caches() -> None:
    """Forget the cached jieba blocks and dictionary tables (after changing jieba's
    dictionary)."""
    _BLOCKS.clear()
    clear_tables()


_JB: list = []  # the jieba module once imported (``_jieba()`` also resets its log level each call)


def _jb():
    if not _JB:
        _JB.append(_jieba())
    return _JB[0]


def _cut_block(blk: str) -> tuple[str, ...]:
    """The kept tokens of one jieba block (stripped, lower case, holding a word character)."""
    jb = _jb()
    words = _cut_han(blk) if jb.re_han_default.match(blk) else jb.lcut(blk)
    return tuple(t for t in (w.strip().lower() for w in words) if t and _WORD.search(t))


def _cut_han(blk: str) -> list[str]:
    """``jieba.lcut`` of one han block (its default mode: dictionary DAG, best route, unknown
    runs through the HMM), with jieba's own DAG and route and :func:`_hmm_cut` for the runs."""
    dt = _jb().dt
    dag = dt.get_DAG(blk)
    route: dict[int, tuple[float, int]] = {}
    dt.calc(blk, dag, route)
    freq = dt.FREQ
    out: list[str] = []
    buf = ""

    def flush(b: str) -> None:
        if len(b) == 1:
            out.append(b)
        elif not freq.get(b):
            out.extend(_hmm_cut(b))
        else:
            out.extend(b)

    x, n = 0, len(blk)
    while x < n:
        y = route[x][1] + 1
        if y - x == 1:
            buf += blk[x]
        else:
            if buf:
                flush(buf)
                buf = ""
            out.append(blk[x:y])
        x = y
    if buf:
        flush(buf)
    return out


def _hmm_cut(text: str) -> list[str]:
    """``list(jieba.finalseg.cut(text))``: han runs by the BMES HMM, other runs as they split."""
    import jieba.finalseg as fs

    out: list[str] = []
    for blk in fs.re_han.split(text):
        if fs.re_han.match(blk):
            for w in _hmm_words(blk):
                if w in fs.Force_Split_Words:
                    out.extend(w)
                else:
                    out.append(w)
        else:
            out.extend(x for x in fs.re_skip.split(blk) if x)
    return out


def _hmm_words(obs: str) -> list[str]:
    """The words of a han run by jieba's HMM (``finalseg``'s Viterbi over B/M/E/S), with back
    pointers instead of copied paths. The sums are jieba's, in jieba's order
    (``prev + trans + emit``); ties go to the later state letter, as jieba's ``max`` over
    ``(prob, state)`` pairs does."""
    import jieba.finalseg as fs

    lo = fs.MIN_FLOAT
    sp, tp, ep = fs.start_P, fs.trans_P, fs.emit_P
    eb, em, ee, es = ep["B"].get, ep["M"].get, ep["E"].get, ep["S"].get
    t_eb, t_sb = tp["E"].get("B", lo), tp["S"].get("B", lo)
    t_mm, t_bm = tp["M"].get("M", lo), tp["B"].get("M", lo)
    t_ss, t_es = tp["S"].get("S", lo), tp["E"].get("S", lo)
    t_be, t_me = tp["B"].get("E", lo), tp["M"].get("E", lo)
    c = obs[0]
    vb, vm, ve, vs = sp["B"] + eb(c, lo), sp["M"] + em(c, lo), sp["E"] + ee(c, lo), sp["S"] + es(c, lo)
    back: list[tuple[str, str, str, str]] = []
    for c in obs[1:]:
        xb, xm, xe, xs = eb(c, lo), em(c, lo), ee(c, lo), es(c, lo)
        p1, p2 = ve + t_eb + xb, vs + t_sb + xb  # B <- E, S
        nb, bb = (p2, "S") if p2 >= p1 else (p1, "E")
        p1, p2 = vm + t_mm + xm, vb + t_bm + xm  # M <- M, B
        nm, bm = (p1, "M") if p1 >= p2 else (p2, "B")
        p1, p2 = vs + t_ss + xs, ve + t_es + xs  # S <- S, E
        ns, bs = (p1, "S") if p1 >= p2 else (p2, "E")
        p1, p2 = vb + t_be + xe, vm + t_me + xe  # E <- B, M
        ne, be = (p2, "M") if p2 >= p1 else (p1, "B")
        vb, vm, ve, vs = nb, nm, ne, ns
        back.append((bb, bm, be, bs))
    state = "S" if vs >= ve else "E"
    tags = [state]
    at = {"B": 0, "M": 1, "E": 2, "S": 3}
    for bp in reversed(back):
        state = bp[at[state]]
        tags.append(state)
    tags.reverse()
    words, begin, nexti = [], 0, 0
    for i, t in enumerate(tags):
        if t == "B":
            begin = i
        elif t == "E":
            words.append(obs[begin:i + 1])
            nexti = i + 1
        elif t == "S":
            words.append(obs[i])
            nexti = i + 1
    if nexti < len(obs):
        words.append(obs[nexti:])
    return words


def _cut_blocks(blocks: list[str]) -> list[tuple[str, ...]]:
    """``[_cut_block(b) for b in blocks]``, the pure-han blocks cut together
    (:func:`notefeed.search.segment.cut_pure_han`; all their words are kept tokens)."""
    han = [i for i, b in enumerate(blocks) if PURE_HAN.fullmatch(b)]
    out: list[tuple[str, ...] | None] = [None] * len(blocks)
    if sum(len(blocks[i]) for i in han) >= BATCH_MIN_CHARS:
        dt = _jb().dt
        dt.check_initialized()
        for i, words in zip(han, cut_pure_han([blocks[i] for i in han], dt, _cut_han), strict=True):
            out[i] = tuple(words)
    return [t if t is not None else _cut_block(b) for t, b in zip(out, blocks, strict=True)]


def _fill_block_cache(texts: list[str]) -> None:
    """Cut the uncached jieba blocks of ``texts`` together into the cache."""
    split = _jb().re_han_default.split
    new = list(dict.fromkeys(b for t in texts for b in split(t) if b and b not in _BLOCKS))
    for b, t in zip(new, _cut_blocks(new), strict=True):
        _remember(b, t)


def _remember(blk: str, toks: tuple[str, ...]) -> None:
    if len(_BLOCKS) >= BLOCK_CACHE_MAX:
        _BLOCKS.clear()
    _BLOCKS[blk] = toks


def _cjk_tokens(text: str) -> list[str]:
    """``notefeed.content.text.tokenize`` of a CJK ``text``, one cached jieba block at a time."""
    out: list[str] = []
    for blk in _jb().re_han_default.split(text):
        if not blk:
            continue
        toks = _BLOCKS.get(blk)
        if toks is None:
            toks = _cut_block(blk)
            _remember(blk, toks)
        out.extend(toks)
    return out


def tokens_of(text: str) -> list[str]:
    """The tokens :func:`notefeed.content.text.tokenize` gives for ``text`` (a string), faster:
    CJK text through the jieba block cache, other text by one regex."""
    if _CJK.search(text) is None:
        return [w.lower() for w in _WORD.findall(text)]
    return _cjk_tokens(text)


def tokens_normalised(text: str) -> list[str]:
    """Tokens of an already normalised ``text`` (:func:`normalise`)."""
    # ``text`` is normalised, so lower case already (str.lower is idempotent on every code point)
    return _WORD.findall(text) if _CJK.search(text) is None else _cjk_tokens(text)


def analyze(text: str) -> list[str]:
    """Index/query tokens of ``text`` (normalised first)."""
    return tokens_normalised(normalise(text))


def normalise_many(texts: list[str], chunk: int = 20_000) -> list[str]:
    """``[normalise(t) for t in texts]``, a chunk of strings per NFKC / lower / regex pass."""
    out: list[str] = []
    for part in _chunks(texts, chunk):
        joined = _SEP.join(part)
        if joined.count(_SEP) != len(part) - 1:  # a NUL inside a text: one at a time
            out.extend(normalise(t) for t in part)
            continue
        pieces = _SPACE.sub(" ", unicodedata.normalize("NFKC", joined).lower()).split(_SEP)
        out.extend(p.strip() for p in pieces)
    return out


def _chunks(texts: list[str], chunk: int) -> list[list[str]]:
    return [texts[i : i + chunk] for i in range(0, len(texts), chunk)]


#: ASCII characters that are not word characters -> space (NUL, the batch separator, is kept)
_ASCII_NONWORD = {i: " " for i in range(1, 128) if not (chr(i).isalnum() or chr(i) == "_")}


def analyze_batch(texts: list[str], workers: int = 1, chunk: int = 20_000,
                  normalised: bool = True) -> tuple[list[list[str]], list[bool]]:
    """(``[analyze(t) for t in texts]``, whether each normalised text holds CJK), batched.

    Whitespace does not change a token (no token holds any, and jieba's blocks stop at it), so
    the batch is NFKC-normalised and lower-cased per chunk of texts joined by NUL (a starter
    that composes with nothing, not case-ignorable, so final sigma stops at it; not whitespace)
    without collapsing spaces. An ASCII text's words are its characters outside ``[a-z0-9_]``
    turned to spaces, split (one ``str.translate`` for the chunk); other CJK-free texts use the
    word regex; CJK texts go through the jieba block cache, the new blocks segmented together
    (:func:`_cut_blocks`), by ``workers`` processes when they hold at least
    :data:`PARALLEL_MIN_CHARS` characters.

    ``normalised=False``: ``[tokens_of(t) for t in texts]`` instead (the plain
    :func:`notefeed.content.text.tokenize`, no NFKC; the text encoder's words).

    A batch of mostly repeated texts (at most a quarter distinct: a category, an author) is
    analysed once per distinct text; each row still gets its own list.
    """
    distinct = dict.fromkeys(texts)
    if texts and len(distinct) * 4 <= len(texts):
        keys = list(distinct)
        toks, cjk = analyze_batch(keys, workers, chunk, normalised)
        at = {k: i for i, k in enumerate(keys)}
        rows = [at[t] for t in texts]
        return [list(toks[i]) for i in rows], [cjk[i] for i in rows]
    norm: list[str] = []
    words: list[list[str] | None] = []
    for part in _chunks(texts, chunk):
        joined = _SEP.join(part)
        if joined.count(_SEP) != len(part) - 1:  # a NUL inside a text: one at a time
            pieces = [unicodedata.normalize("NFKC", t).lower() if normalised else t for t in part]
        else:
            pieces = unicodedata.normalize("NFKC", joined).lower().split(_SEP) if normalised else part
        # the ASCII texts' words, one translate for all of them (ASCII lower-casing needs no context)
        ascii_at = [i for i, p in enumerate(pieces) if p.isascii()]
        got: list[list[str] | None] = [None] * len(pieces)
        if ascii_at:
            asc = _SEP.join([pieces[i] for i in ascii_at])
            asc = asc.lower().translate(_ASCII_NONWORD)
            split = asc.split(_SEP) if asc.count(_SEP) == len(ascii_at) - 1 else \
                [pieces[i].lower().translate(_ASCII_NONWORD).replace(_SEP, " ") for i in ascii_at]
            for i, a in zip(ascii_at, split, strict=True):
                got[i] = a.split()
        norm.extend(pieces)
        words.extend(got)
    cjk = [w is None and _CJK.search(p) is not None for p, w in zip(norm, words, strict=True)]
    cjk_texts = [p for p, c in zip(norm, cjk, strict=True) if c]
    if workers > 1:
        _segment_new_blocks(cjk_texts, workers)
    _fill_block_cache(cjk_texts)
    # a non-ASCII word can change under lower(): the plain tokens lower each word after the regex
    plain = _WORD.findall if normalised else (lambda p: [w.lower() for w in _WORD.findall(p)])
    out = [w if w is not None else (_cjk_tokens(p) if c else plain(p))
           for p, w, c in zip(norm, words, cjk, strict=True)]
    return out, cjk


def _segment_new_blocks(texts: list[str], workers: int) -> None:
    """Cut the uncached jieba blocks of ``texts`` in ``workers`` processes (this one included)
    into the cache, when there are enough characters to pay for starting the processes."""
    split = _jb().re_han_default.split
    new = list({b for t in texts for b in split(t) if b and b not in _BLOCKS})
    if sum(map(len, new)) < PARALLEL_MIN_CHARS or len(new) < 2 * workers:
        return
    import multiprocessing as mp

    parts = [new[i::workers] for i in range(workers)]
    # spawn, not fork: the caller may hold threads (tantivy, a web server) whose locks a fork copies
    with mp.get_context("spawn").Pool(workers - 1) as pool:
        pending = [pool.apply_async(_cut_blocks, (p,)) for p in parts[1:]]
        done = [(parts[0], _cut_blocks(parts[0]))] + [(p, r.get()) for p, r in zip(parts[1:], pending, strict=True)]
    for blocks, toks in done:
        for b, t in zip(blocks, toks, strict=True):
            _remember(b, t)


def analyze_many(texts: list[str], workers: int = 1) -> list[list[str]]:
    """``[analyze(t) for t in texts]``, batched (see :func:`analyze_batch`)."""
    return analyze_batch(texts, workers)[0]


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
