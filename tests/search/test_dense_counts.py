"""The dense index's catalogue counts equal the text encoder's own, so the vectors are unchanged."""

from __future__ import annotations

import os

import numpy as np
import pytest

from notefeed.content.text import TextEncoder, TextEncoderConfig
from notefeed.search.dense import CatalogueWords, DenseIndex, hashed_counts, note_texts, note_words
from tests.search.test_fast_analysis import TRICKY


def _texts() -> list[str]:
    from notefeed.sim.community import generate

    notes = generate("100k", seed=4, n_notes=300, n_creators=30).notes
    rng = np.random.default_rng(0)
    return note_texts(notes) + TRICKY + [" ".join(rng.choice(TRICKY, 4)) for _ in range(50)]


@pytest.mark.parametrize("cfg", [TextEncoderConfig(), TextEncoderConfig(word_ngrams=3, char_ngram_min=2,
                                                                         char_ngram_max=5, n_features=512),
                                 TextEncoderConfig(word_ngrams=1)])
@pytest.mark.parametrize("tf", ["feature", "term"])
def test_hashed_counts_equal_the_encoders(cfg: TextEncoderConfig, tf: str) -> None:
    """Feature scope: the same whole-number counts. Term scope: the same per-term weighted
    counts up to float rounding (log1p in float32 here, in float64 by the plain encoder)."""
    from dataclasses import replace

    cfg = replace(cfg, tf_scope=tf)
    texts = _texts()
    want = TextEncoder(cfg)._counts(texts)
    got = hashed_counts(cfg, texts)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.array_equal(got.indptr, want.indptr)  # no column twice in a row (else more entries)
    assert not got.has_sorted_indices  # left unsorted: the sort this skips
    got.sort_indices()
    assert np.array_equal(got.indices, want.indices)
    if tf == "feature":
        assert np.array_equal(got.data, want.data)
    else:
        np.testing.assert_allclose(got.data, want.data, rtol=1e-6)
        assert not np.array_equal(want.data, TextEncoder(replace(cfg, tf_scope="feature"))._counts(texts).data)


def test_term_weighted_features_by_hand() -> None:
    """Each term's log1p(count) given to each of its features once per occurrence in it; a
    feature shared by two terms sums their weights; without sublinear TF the plain counts."""
    from notefeed.content.text import term_weighted_features

    got = term_weighted_features("tea tea teas", 2, (3, 3))
    l2, l1 = np.log1p(2), np.log1p(1)
    assert got["tea"] == pytest.approx(l2) and got["teas"] == pytest.approx(l1)
    assert got["w:tea tea"] == pytest.approx(l1) and got["w:tea teas"] == pytest.approx(l1)
    assert got["c:<te"] == pytest.approx(l2 + l1)  # in "tea" (twice in the text) and in "teas"
    assert got["c:ea>"] == pytest.approx(l2) and got["c:as>"] == pytest.approx(l1)
    assert got["c:eas"] == pytest.approx(l1)
    assert term_weighted_features("aaaa aaaa", 1, (3, 3), sublinear_tf=False)["c:aaa"] == 4.0  # twice per word, 2 words
    assert term_weighted_features("!!!") == {}


def _same_fit(got: TextEncoder, want: TextEncoder) -> None:
    """Equal fitted arrays: exactly for feature counts (whole numbers), up to the float
    rounding of the per-term weights for term counts."""
    if want.config.tf_scope == "feature":
        np.testing.assert_array_equal(got.idf_, want.idf_)
        np.testing.assert_array_equal(got.components_, want.components_)
    else:
        np.testing.assert_array_equal(got.idf_, want.idf_)  # document frequencies: no rounding
        np.testing.assert_allclose(got.components_, want.components_, atol=2e-5)


def _same_vectors(idx: DenseIndex, plain: TextEncoder, words: list[list[str]]) -> None:
    """The index's vectors are its own encoder's transform of the notes' words (up to the
    order of the sums) and, through :func:`_same_fit`, the plain encoder's: exactly that for
    feature counts; for term counts the last components of two fits a rounding apart differ by
    up to about 3e-5."""
    np.testing.assert_allclose(idx.vectors()[1], idx.encoder.transform_words(words), atol=1e-5)
    _same_fit(idx.encoder, plain)
    tol = 1e-6 if plain.config.tf_scope == "feature" else 1e-4
    np.testing.assert_allclose(idx.vectors()[1], plain.transform_words(words), atol=tol)


@pytest.mark.parametrize("tf", ["term", "feature"])
def test_dense_build_gives_the_plain_encoders_vectors(tf: str) -> None:
    from notefeed.sim.community import generate

    notes = generate("100k", seed=5, n_notes=400, n_creators=30).notes
    idx = DenseIndex.build(notes, dim=16, tf_scope=tf)
    words = note_words(notes)
    plain = TextEncoder(TextEncoderConfig(dim=16, tf_scope=tf)).fit_words(words)
    assert type(idx.encoder) is TextEncoder and idx.encoder.config.tf_scope == tf
    _same_vectors(idx, plain, words)
    # the words are the index tokens of title, tags, category and text: the plain tokens of
    # the joined text wherever normalising changes nothing and no field mixes in CJK
    raw = note_texts(notes)
    from notefeed.content.text import has_cjk, tokenize

    same = [j for j, t in enumerate(raw) if not has_cjk(t)]
    assert len(same) > 100 and all(words[j] == tokenize(raw[j]) for j in same)


@pytest.mark.parametrize("tf", ["term", "feature"])
def test_dense_build_fitted_on_a_sample_gives_the_plain_encoders_vectors(tf: str) -> None:
    """With ``fit_max`` below the catalogue, the encoder is the plain one fitted on the sampled
    notes (their counts are rows of the catalogue's) and every note is transformed by it."""
    from notefeed.sim.community import generate

    notes = generate("100k", seed=6, n_notes=400, n_creators=30).notes
    texts = note_words(notes)
    idx = DenseIndex.build(notes, dim=16, fit_max=150, seed=3, tf_scope=tf)
    rows = np.random.default_rng(3).choice(len(texts), 150, replace=False)
    plain = TextEncoder(TextEncoderConfig(dim=16, seed=3, tf_scope=tf)).fit_words([texts[i] for i in rows])
    _same_vectors(idx, plain, texts)
    full = TextEncoder(TextEncoderConfig(dim=16, seed=3, tf_scope=tf)).fit_words(texts)
    assert not np.array_equal(full.idf_, plain.idf_)  # the sample did change the fit


@pytest.mark.parametrize(("fit_max", "tf"), [(150, "term"), (1000, "term"), (150, "feature")])
def test_dense_build_in_chunks_gives_the_same_vectors(fit_max: int, tf: str) -> None:
    """A catalogue larger than ``chunk``: the sample counted on its own, the notes counted and
    transformed a chunk at a time (a last, shorter chunk too); the vectors are those of the
    plain encoder fitted on the same sample, as in one pass."""
    from notefeed.sim.community import generate

    notes = generate("100k", seed=6, n_notes=400, n_creators=30).notes
    texts = note_words(notes)
    idx = DenseIndex.build(notes, dim=16, fit_max=fit_max, seed=3, chunk=64, tf_scope=tf)
    fit = texts if fit_max >= len(texts) else \
        [texts[i] for i in np.random.default_rng(3).choice(len(texts), fit_max, replace=False)]
    plain = TextEncoder(TextEncoderConfig(dim=16, seed=3, tf_scope=tf)).fit_words(fit)
    _same_vectors(idx, plain, texts)
    assert np.array_equal(idx.vectors()[0], np.arange(len(texts)))
    one = DenseIndex.build(notes, dim=16, fit_max=fit_max, seed=3, tf_scope=tf)  # one chunk: the same sample
    np.testing.assert_allclose(one.vectors()[1], idx.vectors()[1], atol=1e-5)


@pytest.mark.parametrize(("threads", "tf"), [(1, "term"), (2, "term"), (3, "term"), (2, "feature")])
def test_dense_build_on_threads_gives_the_plain_encoders_vectors(threads: int, tf: str, monkeypatch) -> None:
    """The projection on row blocks in threads: every row is its own product, so the vectors
    are exactly those of one thread, and the plain encoder's up to the column order of the sums."""
    import notefeed.search.dense as dense
    from notefeed.sim.community import generate

    monkeypatch.setattr(dense, "THREAD_MIN_ROWS", 0)
    notes = generate("100k", seed=7, n_notes=300, n_creators=30).notes
    texts = note_words(notes)
    idx = DenseIndex.build(notes, dim=16, threads=threads, tf_scope=tf)
    np.testing.assert_array_equal(idx.vectors()[1],
                                  DenseIndex.build(notes, dim=16, threads=1, tf_scope=tf).vectors()[1])
    _same_vectors(idx, TextEncoder(TextEncoderConfig(dim=16, tf_scope=tf)).fit_words(texts), texts)
    calls = []
    name = "_project_terms" if tf == "term" else "_tfidf"  # the path the equality above covers
    real = getattr(dense._CatalogueEncoder, name)
    monkeypatch.setattr(dense._CatalogueEncoder, name, lambda self, c, **k: calls.append(1) or real(self, c, **k))
    DenseIndex.build(notes, dim=16, threads=threads, tf_scope=tf)
    assert calls


@pytest.mark.parametrize("tf", ["feature", "term"])
def test_query_encoder_matches_transform(tf: str) -> None:
    from notefeed.search.dense import _QueryEncoder
    from notefeed.sim.community import generate

    words = note_words(generate("100k", seed=4, n_notes=300, n_creators=30).notes)
    enc = TextEncoder(TextEncoderConfig(dim=16, tf_scope=tf)).fit_words(words)
    qe = _QueryEncoder(enc, cache_max=50)  # small cache: it is emptied along the way
    queries = [w[:6] for w in words[:200]] + [[], ["zzzz", "unseen", "words"], ["上海", "外滩"], ["paris"]] * 2
    want = enc.transform_words(queries)
    got = np.stack([qe(q) for q in queries])
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert not np.any(got[-4])  # no words: the zero vector, as transform gives


def test_dense_job_in_a_worker_process_gives_the_same_vectors(monkeypatch) -> None:
    """``DenseJob(background=True)``: the vectors computed in a spawned process equal those of
    this process; the pipeline built with it (its analysis in pieces shared with the worker)
    answers as the one built without."""
    import notefeed.search.pipeline as pipeline
    from notefeed.search import SearchConfig, SearchPipeline
    from notefeed.search.dense import DenseJob, encode_catalogue
    from notefeed.search.tokens import analyze_catalogue
    from notefeed.sim.community import generate

    notes = generate("100k", seed=8, n_notes=300, n_creators=30).notes
    want_enc, want = encode_catalogue(CatalogueWords.of_notes(notes), 16, 200, 2)
    for encode in (True, False):  # the tokens handed over (the worker fitted meanwhile) / analysed at result()
        job = DenseJob(notes, dim=16, fit_max=200, seed=2, background=True)
        assert job.background
        if encode:
            job.encode(analyze_catalogue(notes))
        enc, vecs = job.result()
        np.testing.assert_array_equal(vecs, want)
        np.testing.assert_array_equal(enc.components_, want_enc.components_)
        np.testing.assert_array_equal(enc.idf_, want_enc.idf_)
        assert not job.background  # the worker is gone once the result is in
    with pytest.raises(Exception, match="tokens"):
        DenseJob(notes, dim=16).encode(analyze_catalogue(notes.iloc[:5]))
    inline = SearchPipeline.build(notes, SearchConfig(dense_dim=16, dense_process_min=0))
    monkeypatch.setattr(pipeline, "_ANALYSIS_PIECE", 40)  # 7 pieces, some analysed there
    shared = []
    real_concat = pipeline.NoteTokens.concat
    monkeypatch.setattr(pipeline.NoteTokens, "concat", lambda parts: shared.append(len(parts)) or real_concat(parts))
    worker = SearchPipeline.build(notes, SearchConfig(dense_dim=16, dense_process_min=1))
    assert shared == [7]
    assert dict(worker.lexical.df) == dict(inline.lexical.df) and worker.intent.vocab == inline.intent.vocab
    np.testing.assert_array_equal(worker.dense.vectors()[1], inline.dense.vectors()[1])
    for a, b in zip(worker.topics.arrays, inline.topics.arrays, strict=True):  # the mixtures, in the worker too
        np.testing.assert_array_equal(a, b)
    assert worker.topics.arrays[1].any()
    np.testing.assert_array_equal(worker.intent.log_lik, inline.intent.log_lik)  # refined there too
    for q in ("travel", "food photo", "猫"):
        a, b = worker.search(q, 10), inline.search(q, 10)
        assert a.items.tolist() == b.items.tolist(), q


def test_dense_job_falls_back_when_the_worker_dies_and_stops_it_on_failure(monkeypatch) -> None:
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from notefeed.search import SearchConfig, SearchPipeline
    from notefeed.search.dense import DenseJob, encode_catalogue
    from notefeed.search.tokens import analyze_catalogue
    from notefeed.sim.community import generate

    notes = generate("100k", seed=8, n_notes=120, n_creators=30).notes
    job = DenseJob(notes, dim=8, background=False)
    job.encode(analyze_catalogue(notes))
    dead: Future = Future()
    dead.set_exception(BrokenProcessPool("killed"))
    job._future = dead  # a worker that died: computed here instead
    enc, vecs = job.result()
    np.testing.assert_array_equal(vecs, encode_catalogue(CatalogueWords.of_notes(notes), 8)[1])
    # a task given to the worker after the vectors: computed here when the worker has died
    job = DenseJob(notes, dim=8, background=True)
    assert job.background
    task = job.then(os.getpid)  # queued behind the vectors, which take the worker's start-up at least
    for proc in list(job._worker.processes()):
        proc.kill()
    assert task() == os.getpid()
    job.result()  # the vectors: computed here too
    assert job._worker is None  # nothing pending: the worker is let go
    # a build that fails while the worker runs stops the worker
    import multiprocessing as mp

    import notefeed.search.pipeline as pipeline

    cancelled = []
    real_cancel = DenseJob.cancel
    monkeypatch.setattr(DenseJob, "cancel", lambda self: cancelled.append(self.background) or real_cancel(self))

    def boom(*a, **k):
        raise RuntimeError("analysis failed")

    monkeypatch.setattr(pipeline, "analyze_catalogue", boom)
    with pytest.raises(RuntimeError, match="analysis failed"):
        SearchPipeline.build(notes, SearchConfig(dense_dim=8, dense_process_min=1))
    assert cancelled == [True] and not mp.active_children()


def test_feature_columns_equal_sklearns_hasher(monkeypatch) -> None:
    """The array MurmurHash3 gives FeatureHasher's column for every string: ASCII and not,
    every length from empty to past several 4-byte blocks and tails, several feature counts."""
    import random

    from sklearn.feature_extraction import FeatureHasher

    import notefeed.search.dense as dense

    rng = random.Random(0)
    alpha = "abcXYZ09 <>:" + "çé上海外滩😀"
    strings = ["".join(rng.choice(alpha) for _ in range(rng.randrange(0, 23))) for _ in range(3000)] + TRICKY
    for n_features in (2**15, 512, 7):
        want = FeatureHasher(n_features, input_type="string", alternate_sign=False).transform(
            [s] for s in strings).tocsr()
        assert np.array_equal(dense._hash(strings, n_features), want.indices)
    ascii_only = [s for s in strings if s.isascii()]
    want = FeatureHasher(2**15, input_type="string", alternate_sign=False).transform([s] for s in ascii_only).tocsr()
    assert np.array_equal(dense._hash(ascii_only, 2**15), want.indices)
    assert dense._hash([], 8).shape == (0,)
    # the one hash whose abs overflows int32 takes sklearn's column for it
    monkeypatch.setattr(dense, "murmur3_32", lambda buf, start, size: np.full(len(start), 2**31, np.uint32))
    assert dense._hash(["a", "b"], 1000).tolist() == [(2**31 - 1 - 999) % 1000] * 2


@pytest.mark.parametrize("k", [2, 3])
def test_word_ngram_columns_without_strings(k: int) -> None:
    """The n-grams' columns from the words' bytes placed by gathers equal the columns of the
    n-gram strings themselves (multi-byte words, one-letter words, repeated words)."""
    from notefeed.search.dense import _hash, _hash_grams

    words = ["a", "café", "上海", "外滩", "naïve", "zz", "x" * 13, "ü"]
    rng = np.random.default_rng(k)
    ids = rng.integers(0, len(words), 400)
    first = np.unique(rng.integers(0, len(ids) - k + 1, 150))
    want = _hash(["w:" + " ".join(words[i] for i in ids[f : f + k]) for f in first.tolist()], 2**15)
    np.testing.assert_array_equal(_hash_grams(words, first, ids, k, 2**15), want)
    assert len(np.unique(want)) > 40  # distinct n-grams, distinct columns: not a constant


def test_an_encoder_saved_before_tf_scope_loads_as_per_feature(tmp_path) -> None:
    """An encoder artifact written before ``tf_scope`` existed has no such key: it loads with
    the per-feature TF it was fitted with, so an old index's queries keep matching its notes."""
    import json

    texts = _texts()
    enc = TextEncoder(TextEncoderConfig(dim=8)).fit(texts)
    folder = enc.save(tmp_path / "enc")
    cfg_path = next(p for p in folder.rglob("config.json"))
    raw = json.loads(cfg_path.read_text())
    raw["config"].pop("tf_scope")
    cfg_path.write_text(json.dumps(raw))
    old = TextEncoder.load(folder)
    assert old.config.tf_scope == "feature"
    np.testing.assert_array_equal(old.transform(texts[:50]), enc.transform(texts[:50]))
    term = TextEncoder(TextEncoderConfig(dim=8, tf_scope="term"))
    term.idf_, term.components_ = old.idf_, old.components_
    assert not np.allclose(term.transform(texts[:50]), old.transform(texts[:50]), atol=1e-4)  # the scope matters


def test_shared_tasks_split_between_the_worker_and_this_process() -> None:
    """``DenseJob.share``: the results in the tasks' order; this process takes back from the end
    every task the worker has not started; without a worker, or a dead one, all run here."""
    from notefeed.search.dense import DenseJob
    from notefeed.sim.community import generate

    notes = generate("100k", seed=8, n_notes=120, n_creators=30).notes
    here = os.getpid()
    job = DenseJob(notes, dim=8, background=True)
    powers = job.share(pow, [(2, k) for k in range(6)])
    pids = job.share(os.getpid, [()] * 6)
    assert pids()[-1] == here  # the worker is still on the vectors: the last ones are taken back
    assert powers() == [2**k for k in range(6)]
    job.result()
    assert job._worker is None  # everything taken: the worker is let go
    job = DenseJob(notes, dim=8, background=False)
    assert job.share(os.getpid, [()] * 3)() == [here] * 3
    assert job.share(pow, [])() == []
    job = DenseJob(notes, dim=8, background=True)
    pids = job.share(os.getpid, [()] * 4)
    for proc in list(job._worker.processes()):
        proc.kill()
    assert pids() == [here] * 4  # the tasks the dead worker had are computed here
    job.result()


def test_a_worker_killed_while_a_large_task_is_sent_leaves_no_hang(tmp_path) -> None:
    """A task too large for the pipe is being written to the worker when it dies (killed, out
    of memory): the build goes on in this process, and the process still exits (the queue's
    writer thread, blocked on a pipe nobody reads, is not waited for)."""
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent("""
        import os
        from notefeed.search.dense import DenseJob
        from notefeed.sim.community import generate

        if __name__ == "__main__":
            notes = generate("100k", seed=8, n_notes=120, n_creators=30).notes
            job = DenseJob(notes, dim=8, background=True)
            big = job.share(len, [(b"x" * 50_000_000,)] * 3)  # queued behind the fit, written as it goes
            for proc in list(job._worker.processes()):
                proc.kill()
            assert big() == [50_000_000] * 3
            job.result()
            print("done", flush=True)
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.returncode == 0 and "done" in out.stdout, out.stderr[-2000:]


def test_term_products_are_the_tfidf_matrixs() -> None:
    """The SVD's products through the two factors (the notes' word and n-gram terms, each
    word's features) are those of the TF-IDF matrix at unit rows, up to float rounding; words
    that share character n-grams, repeated words and CJK included."""
    from notefeed.content.text import _unit_scales, tokenize
    from notefeed.search.dense import _CatalogueEncoder, _term_counts, _term_products, _terms_of

    cfg = TextEncoderConfig(dim=8, tf_scope="term", n_features=512)
    terms = _terms_of(cfg, CatalogueWords.of_lists([tokenize(t) for t in _texts()]))
    enc = _CatalogueEncoder(cfg)
    counts = _term_counts(cfg, terms)
    enc._fit_idf(counts)
    x = enc._tfidf(counts).toarray()
    matmat, rmatmat = _term_products(cfg, terms, enc.idf_, _unit_scales(counts.data * enc.idf_[counts.indices], counts))
    rng = np.random.default_rng(0)
    v, p = rng.standard_normal((512, 5)).astype(np.float32), rng.standard_normal((len(x), 5)).astype(np.float32)
    np.testing.assert_allclose(matmat(v), x @ v, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(rmatmat(p), x.T @ p, rtol=1e-4, atol=1e-5)
    assert np.abs(x @ v).max() > 0.5  # not all zeros
