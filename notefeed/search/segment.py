"""jieba's default cut of many han blocks at once, with array operations instead of a Python
step per character.

``jieba.lcut(block)`` for a block of han characters (``[\\u4E00-\\u9FD5]+``) is: the dictionary
DAG (every dictionary word starting at each character), the best route through it from the
right (``log(freq) - log(total) + route[next]``, ties to the longer word), and the runs of
single characters of that route that are not a dictionary word cut by the BMES HMM
(``jieba.finalseg``'s Viterbi). :func:`cut_pure_han` does the same for a batch of blocks:

- the DAG by dictionary look-ups of all the batch's substrings of one length at a time (only
  where the shorter one was a dictionary prefix, as jieba stops);
- the route by one array step per distance from the block's end, over all blocks together;
- the Viterbi by one array step per character position, over all the runs together.

The floating-point sums are jieba's, in jieba's order (float64, ``math.log`` of each distinct
frequency) and the ties go where jieba's ``max`` sends them, so the words are the same. A run
whose best state sequence is not a well-formed B(M*)E / S sequence (possible only when whole
paths tie at jieba's ``MIN_FLOAT``) and every block longer than ``max_len`` are cut by the
``fallback`` (the one-block cutter), as is everything when jieba has forced splits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["cut_pure_han", "clear_tables", "PURE_HAN"]

#: a block this module cuts: han characters only (jieba.finalseg's ``re_han`` range)
PURE_HAN = re.compile("[\u4E00-\u9FD5]+")
_B, _M, _E, _S = 0, 1, 2, 3


def cut_pure_han(blocks: list[str], dt: Any, fallback: Callable[[str], list[str]],
                 max_len: int = 400, chunk_chars: int = 300_000) -> list[list[str]]:
    """``[jieba.lcut(b) for b in blocks]`` for pure-han ``blocks`` (see the module doc); ``dt``
    is jieba's initialised tokenizer (``jieba.dt``). Blocks are cut ``chunk_chars`` characters
    at a time (the arrays hold a few dozen bytes per character)."""
    import jieba.finalseg as fs

    out: list[list[str] | None] = [None] * len(blocks)
    vec = [] if fs.Force_Split_Words else [i for i, b in enumerate(blocks) if 0 < len(b) <= max_len]
    while vec:
        take, size = 0, 0
        while take < len(vec) and (size < chunk_chars or take == 0):
            size += len(blocks[vec[take]])
            take += 1
        part, vec = vec[:take], vec[take:]
        words, bad = _cut([blocks[i] for i in part], dt, fs)
        for j, i in enumerate(part):
            if not bad[j]:
                out[i] = words[j]
    return [w if w is not None else fallback(b) for w, b in zip(out, blocks, strict=True)]


def _cut(blocks: list[str], dt: Any, fs: Any) -> tuple[list[list[str]], np.ndarray]:
    """(words per block, (n_blocks,) bool: the block needs the fallback)."""
    freq = dt.FREQ
    s = "".join(blocks)
    n = len(s)
    nb = len(blocks)
    lens = np.fromiter(map(len, blocks), np.int64, nb)
    off = np.zeros(nb, np.int64)
    np.cumsum(lens[:-1], out=off[1:])
    bid = np.repeat(np.arange(nb, dtype=np.int64), lens)
    bend = (off + lens)[bid]  # (n,) one past each position's block

    # --- the DAG: edges (start, end, freq) of the dictionary words; words of up to
    # _TABLE_MAX characters looked up in sorted code tables, longer ones in the dict
    cp = np.frombuffer(s.encode("utf-32-le"), np.uint32).astype(np.int64)
    tables = _tables(freq)
    es, ee, ef = [], [], []
    alive = np.arange(n, dtype=np.int64)
    code = np.zeros(n, np.int64)
    length = 1
    while len(alive):
        if length <= _TABLE_MAX:
            code = code[: len(alive)] if length == 1 else code
            code = (code << 21) | cp[alive + length - 1]
            keys, vals = tables[length - 1]
            at = np.minimum(np.searchsorted(keys, code), len(keys) - 1)
            fr = np.where(keys[at] == code, vals[at], -1)
        else:
            pos = alive.tolist()
            fr = np.fromiter((freq.get(s[p : p + length], -1) for p in pos), np.int64, len(pos))
        word = fr > 0
        es.append(alive[word])
        ee.append(alive[word] + length - 1)
        ef.append(fr[word])
        go = (fr >= 0) & (alive + length < bend[alive])
        alive, code = alive[go], code[go]
        length += 1
    st, en, fq = np.concatenate(es), np.concatenate(ee), np.concatenate(ef)
    lone = np.ones(n, bool)
    lone[st] = False  # a position with no word: the character alone, frequency 1 (``or 1``)
    lone_at = np.flatnonzero(lone)
    st = np.concatenate([st, lone_at])
    en = np.concatenate([en, lone_at])
    fq = np.concatenate([fq, np.ones(len(lone_at), np.int64)])
    logtotal = math.log(dt.total)
    uf, inv = np.unique(fq, return_inverse=True)
    lp = np.array([math.log(f) - logtotal for f in uf.tolist()], np.float64)[inv]
    order = np.argsort(st, kind="stable")  # edges were made shortest first: (start, end) order
    st, en, lp = st[order], en[order], lp[order]
    cnt = np.bincount(st, minlength=n)
    first = np.zeros(n, np.int64)
    np.cumsum(cnt[:-1], out=first[1:])
    col = np.arange(len(st)) - first[st]
    k = int(cnt.max())
    e2 = np.repeat(np.arange(n, dtype=np.int64)[:, None], k, axis=1)
    l2 = np.full((n, k), -np.inf)
    e2[st, col] = en
    l2[st, col] = lp
    term = e2 + 1 >= bend[:, None]  # the word ends its block: route[N] = 0

    # --- the route, right to left, one distance from the block's end at a time
    rv = np.zeros(n + 1, np.float64)
    best_end = np.zeros(n, np.int64)
    by_len = np.argsort(-lens, kind="stable")
    last = (off + lens - 1)[by_len]  # blocks longest first: those longer than d are a prefix
    longer = np.searchsorted(-lens[by_len], -np.arange(int(lens.max()) + 1), side="left")
    for d in range(int(lens.max())):
        ps = last[: longer[d]] - d
        cand = l2[ps] + np.where(term[ps], 0.0, rv[e2[ps] + 1])
        j = k - 1 - np.argmax(cand[:, ::-1], axis=1)  # the last maximum: ties to the longer word
        rv[ps] = cand[np.arange(len(ps)), j]
        best_end[ps] = e2[ps, j]

    # --- the route's segments, from each block's start
    seg = np.zeros(n, bool)
    cur, lim = off.copy(), off + lens
    while len(cur):
        seg[cur] = True
        cur = best_end[cur] + 1
        keep = cur < lim
        cur, lim = cur[keep], lim[keep]
    starts = np.flatnonzero(seg)  # each block's start is one, so a segment ends at the next start
    single = np.diff(np.append(starts, n)) == 1

    # --- runs of single characters (jieba's ``buf``)
    sing_at = starts[single]
    newrun = np.ones(len(sing_at), bool)
    newrun[1:] = (sing_at[1:] != sing_at[:-1] + 1) | (bid[sing_at[1:]] != bid[sing_at[:-1]])
    ra = sing_at[newrun]
    rl = np.diff(np.append(np.flatnonzero(newrun), len(sing_at)))
    wstart = np.zeros(n, bool)
    wstart[starts] = True  # every route segment starts a word; HMM runs may split further
    multi = rl > 1
    ma, ml = ra[multi], rl[multi]
    known = np.fromiter((bool(freq.get(s[a : a + m])) for a, m in zip(ma.tolist(), ml.tolist(), strict=True)),
                        bool, len(ma))
    ha, hl = ma[~known], ml[~known]
    bad = np.zeros(nb, bool)
    if len(ha):
        tags = _viterbi(s, ha, hl, fs)
        pos = np.repeat(ha, hl) + (np.arange(int(hl.sum())) - np.repeat(np.cumsum(hl) - hl, hl))
        t = tags[pos]
        run_first = np.zeros(len(pos), bool)
        run_first[np.cumsum(hl) - hl] = True
        prev = np.roll(t, 1)
        ok = np.where(run_first, (t == _B) | (t == _S),
                      np.where(prev <= _M, (t == _M) | (t == _E), (t == _B) | (t == _S)))
        bad[bid[pos[~ok]]] = True
        wstart[pos] = run_first | (prev >= _E)  # a word after each E or S
    ws = np.flatnonzero(wstart)
    we = np.minimum(np.append(ws[1:], n), bend[ws])
    flat = [s[a:b] for a, b in zip(ws.tolist(), we.tolist(), strict=True)]
    per = np.bincount(bid[ws], minlength=nb)
    cut = np.cumsum(per).tolist()
    words = [flat[a:b] for a, b in zip([0, *cut[:-1]], cut, strict=True)]
    return words, bad


_TABLE_MAX = 3  # 3 characters of 21 bits fit an int64 code
_TABLES: list[tuple[int, int, list[tuple[np.ndarray, np.ndarray]]]] = []


def _tables(freq: dict[str, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """For words of 1.._TABLE_MAX characters: (sorted codes, their frequencies) of jieba's
    prefix dictionary, the codes being the characters' code points 21 bits each. Remembered
    for this dictionary object and size (jieba's ``add_word`` changes it in place; a changed
    frequency needs :func:`clear_tables`)."""
    known = _TABLES[:1]  # one read: another thread may clear or replace the list
    if known and known[0][0] == id(freq) and known[0][1] == len(freq):
        return known[0][2]
    words = list(freq)
    vals = np.fromiter(freq.values(), np.int64, len(words))
    lens = np.fromiter(map(len, words), np.int64, len(words))
    out = []
    for m in range(1, _TABLE_MAX + 1):
        sel = np.flatnonzero(lens == m)
        cps = np.frombuffer("".join([words[i] for i in sel.tolist()]).encode("utf-32-le"), np.uint32)
        cps = cps.astype(np.int64).reshape(len(sel), m)
        code = np.zeros(len(sel), np.int64)
        for c in range(m):
            code = (code << 21) | cps[:, c]
        order = np.argsort(code)
        out.append((code[order], vals[sel][order]))
    _TABLES[:] = [(id(freq), len(freq), out)]
    return out


def clear_tables() -> None:
    """Forget the dictionary tables (a frequency changed in place keeps the dictionary's size)."""
    _TABLES.clear()


def _best(a: np.ndarray, b: np.ndarray, sa: int, sb: int) -> tuple[np.ndarray, np.ndarray]:
    """Elementwise the larger of ``a`` and ``b`` (``a`` on a tie) and the state it came from."""
    c = a >= b
    return np.where(c, a, b), np.where(c, sa, sb)


def _viterbi(s: str, ra: np.ndarray, rl: np.ndarray, fs: Any) -> np.ndarray:
    """(len(s),) int8 BMES states of the characters of the runs ``s[ra[i] : ra[i] + rl[i]]``
    (other positions 0), by jieba.finalseg's Viterbi: ``prev + trans + emit`` in float64 and
    jieba's tie order (the later state letter wins), one character position at a time."""
    lo = fs.MIN_FLOAT
    sp, tp, ep = fs.start_P, fs.trans_P, fs.emit_P
    t_eb, t_sb = tp["E"].get("B", lo), tp["S"].get("B", lo)
    t_mm, t_bm = tp["M"].get("M", lo), tp["B"].get("M", lo)
    t_ss, t_es = tp["S"].get("S", lo), tp["E"].get("S", lo)
    t_be, t_me = tp["B"].get("E", lo), tp["M"].get("E", lo)
    order = np.argsort(-rl, kind="stable")
    ra, rl = ra[order], rl[order]
    n = len(s)
    cp = np.frombuffer(s.encode("utf-32-le"), np.uint32)
    uc, inv = np.unique(cp, return_inverse=True)
    chars = [chr(c) for c in uc.tolist()]
    emit = {x: np.array([ep[x].get(c, lo) for c in chars], np.float64)[inv] for x in "BMES"}
    eb, em, ee, es = emit["B"], emit["M"], emit["E"], emit["S"]
    vb, vm = sp["B"] + eb[ra], sp["M"] + em[ra]
    ve, vs = sp["E"] + ee[ra], sp["S"] + es[ra]
    back = np.zeros((4, n), np.int8)
    lmax = int(rl[0])
    active = np.searchsorted(-rl, -np.arange(lmax + 1), side="left")  # runs longer than t: active[t]
    for t in range(1, lmax):
        na = int(active[t])
        p = ra[:na] + t
        xb, xm, xe, xs = eb[p], em[p], ee[p], es[p]
        b_, m_, e_, s_ = vb[:na], vm[:na], ve[:na], vs[:na]
        # each state's best predecessor; the first of the two wins a tie (jieba's order)
        nb_, back[_B, p] = _best(s_ + t_sb + xb, e_ + t_eb + xb, _S, _E)  # B <- S, E
        nm_, back[_M, p] = _best(m_ + t_mm + xm, b_ + t_bm + xm, _M, _B)  # M <- M, B
        ns_, back[_S, p] = _best(s_ + t_ss + xs, e_ + t_es + xs, _S, _E)  # S <- S, E
        ne_, back[_E, p] = _best(m_ + t_me + xe, b_ + t_be + xe, _M, _B)  # E <- M, B
        vb[:na], vm[:na], ve[:na], vs[:na] = nb_, nm_, ne_, ns_
    state = np.where(vs >= ve, _S, _E).astype(np.int8)
    tags = np.zeros(n, np.int8)
    for t in range(lmax - 1, -1, -1):
        na = int(active[t])
        p = ra[:na] + t
        inner = rl[:na] - 1 > t  # not the run's last character: step back from the next one
        st = state[:na]
        st[inner] = back[st[inner], p[inner] + 1]
        state[:na] = st
        tags[p] = st
    return tags
