"""The catalogue's tokens as arrays (``notefeed.search.tokens``) hold exactly the per-note
analysis, and every consumer that reads the arrays gets what it got from the token lists."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from notefeed.content.text import has_cjk, tokenize
from notefeed.search.text import FIELDS, clear_caches, normalise, note_fields
from notefeed.search.tokens import ALL_FIELDS, analyze_catalogue, ragged_concat, ragged_take

from .test_fast_analysis import TRICKY


def _notes() -> pd.DataFrame:
    from notefeed.sim.community import generate

    notes = generate("100k", seed=3, n_notes=300, n_creators=30).notes
    n = len(TRICKY)
    extra = pd.DataFrame({"note_id": [f"x{i}" for i in range(n)], "title": TRICKY, "text": TRICKY[::-1],
                          "tags": [[t, "tag"] for t in TRICKY], "category": "c", "author_id": "a"})
    # a text with a NUL (the batch separator), all-empty fields, a note of ASCII fields only
    odd = pd.DataFrame({"note_id": ["y0", "y1", "y2"], "title": ["nul\x00in title", "", "Plain ASCII"],
                        "text": ["", "", "words, more words"], "tags": [[], [], ["ok"]],
                        "category": ["", "", "c"], "author_id": ["b", "b", "unknown"]})
    return pd.concat([notes, extra, odd], ignore_index=True)


@pytest.mark.parametrize("chunk", [7, 20_000])  # many chunks / one
def test_arrays_hold_the_plain_analysis_of_every_field(chunk: int) -> None:
    clear_caches()
    notes = _notes()
    raw = note_fields(notes)
    tok = analyze_catalogue(notes, chunk=chunk)
    assert len(tok) == len(notes)
    for j in range(len(notes)):
        want = {f: tokenize(normalise(raw[f][j])) for f in FIELDS}
        words = want["title"] + want["text"] + want["tags"]
        want["grams"] = [ch for t in words if len(t) > 1 and has_cjk(t) for ch in t]
        assert tok[j] == want, j
        for f in ALL_FIELDS:  # tantivy's input: the same words, split at whitespace
            assert tok.strings[f][j].split() == want[f], (j, f)
        for f in FIELDS:
            assert bool(tok.cjk[f][j]) == has_cjk(normalise(raw[f][j]))
    assert tok[-1] == tok[len(notes) - 1] and tok[2:5] == [tok[2], tok[3], tok[4]]
    assert list(tok) == [tok[j] for j in range(len(tok))]
    with pytest.raises(IndexError):
        tok[len(notes)]
    assert len(set(tok.vocab)) == len(tok.vocab)  # each token once


def test_document_frequencies_and_field_concatenation() -> None:
    notes = _notes()
    tok = analyze_catalogue(notes)
    want: Counter[str] = Counter()
    for d in tok:
        want.update(set(t for f in FIELDS for t in d[f]))
    df = tok.document_frequencies()
    assert {tok.vocab[i]: int(c) for i, c in enumerate(df) if c} == dict(want)
    rows = np.array([5, 0, 5, len(notes) - 1])
    codes, ptr = tok.fields(("title", "tags", "text"), rows)
    for k, j in enumerate(rows.tolist()):
        got = [tok.vocab[c] for c in codes[ptr[k]:ptr[k + 1]].tolist()]
        assert got == tok[j]["title"] + tok[j]["tags"] + tok[j]["text"]


def test_ragged_helpers() -> None:
    codes, ptr = np.array([1, 2, 3, 4, 5, 6]), np.array([0, 2, 2, 6])
    c, p = ragged_take(codes, ptr, np.array([2, 1, 0, 2]))
    assert c.tolist() == [3, 4, 5, 6, 1, 2, 3, 4, 5, 6] and p.tolist() == [0, 4, 4, 6, 10]
    c, p = ragged_concat([(codes, ptr), (np.array([9, 8]), np.array([0, 0, 1, 2]))])
    assert c.tolist() == [1, 2, 9, 3, 4, 5, 6, 8] and p.tolist() == [0, 2, 3, 8]
    c, p = ragged_take(codes, ptr, np.zeros(0, np.int64))
    assert c.tolist() == [] and p.tolist() == [0]


def test_empty_catalogue() -> None:
    tok = analyze_catalogue(pd.DataFrame({"note_id": [], "title": [], "text": []}))
    assert len(tok) == 0 and list(tok) == [] and tok.document_frequencies().tolist() == []


def test_consumers_of_the_arrays_equal_those_of_the_token_lists() -> None:
    from notefeed.search.intent import CategoryModel
    from notefeed.search.lexical import LexicalIndex
    from notefeed.search.topics import note_counts

    notes = _notes()
    tok = analyze_catalogue(notes)
    docs = list(tok)
    cats = notes["category"].astype(str).tolist()
    rows = np.arange(0, len(notes), 2)
    a = CategoryModel().fit([docs[j]["title"] + docs[j]["text"] + docs[j]["tags"] for j in rows.tolist()],
                            [cats[j] for j in rows.tolist()])
    b = CategoryModel().fit_codes(*tok.fields(("title", "text", "tags"), rows), tok.vocab, [cats[j] for j in rows.tolist()])
    assert a.vocab == b.vocab and list(a.vocab) == list(b.vocab) and a.categories == b.categories
    np.testing.assert_array_equal(a.log_lik, b.log_lik)
    np.testing.assert_array_equal(a.log_prior, b.log_prior)
    x, y = note_counts(docs, a), note_counts(tok, a)
    assert (x != y).nnz == 0 and x.shape == y.shape
    np.testing.assert_array_equal(x.indptr, y.indptr)
    np.testing.assert_array_equal(x.indices, y.indices)
    lists, arrays = LexicalIndex(), LexicalIndex()
    lists.add_tokens(docs, np.arange(len(docs)))
    arrays.add_tokens(tok, np.arange(len(docs)))
    assert dict(lists.df) == dict(arrays.df) and lists.n_docs == arrays.n_docs == len(docs)
    for q in (["coffee"], ["上海"], ["c"], ["海"], ["tag", "words"]):
        want = sorted((round(s, 4), a.doc) for s, a in lists.index.searcher().search(lists.query(q), 50).hits)
        got = sorted((round(s, 4), a.doc) for s, a in arrays.index.searcher().search(arrays.query(q), 50).hits)
        assert [s for s, _ in got] == [s for s, _ in want], q
    with pytest.raises(Exception, match="items"):
        arrays.add_tokens(tok, np.arange(3))


def test_parts_analysed_apart_concatenate_to_the_whole() -> None:
    """``NoteTokens.concat``: pieces analysed on their own (own vocabularies, as the build's
    worker process analyses some) give every note the tokens of one analysis of the whole."""
    from notefeed.search.tokens import NoteTokens

    notes = _notes()
    whole = analyze_catalogue(notes)
    cuts = [0, 1, 40, 41, 200, len(notes)]
    parts = [analyze_catalogue(notes.iloc[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    got = NoteTokens.concat(parts)
    assert len(got) == len(notes) and list(got) == list(whole)
    for f in ALL_FIELDS:
        assert got.strings[f] == whole.strings[f]
    for f in FIELDS:
        np.testing.assert_array_equal(got.cjk[f], whole.cjk[f])
    assert sorted(got.vocab) == sorted(whole.vocab)
    df_got = dict(zip(got.vocab, got.document_frequencies().tolist(), strict=True))
    df_whole = dict(zip(whole.vocab, whole.document_frequencies().tolist(), strict=True))
    assert df_got == df_whole
    assert NoteTokens.concat([whole]) is whole
