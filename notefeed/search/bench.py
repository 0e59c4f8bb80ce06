"""``notefeed bench search``: index build throughput and query latency of BM25 alone and of the
full hybrid pipeline, side by side on the same simulated notes and queries.

The notes and queries are a :class:`BenchCorpus`; ``notefeed bench search`` draws it from the
simulator's world (:data:`BENCH_CORPORA` ``"sim"``, registered by
:func:`notefeed.sim.search_data.bench_corpus`: titles, texts, tags, a share written in Chinese;
queries are 1-2 frequent words of a random topic). Hybrid queries carry a 30-note user history
(personalisation on) and, when the corpus has creators, the small-creator rule. Latency is end
to end inside the process (understanding, retrieval, fusion, personalisation, the page's
rules), single client, after a warm-up.

Besides wall time, each figure has its CPU time (``time.process_time``, all threads of the
process, plus the CPU time of the child processes a build waited for: the dense worker,
segmenting workers): on a shared machine the wall time includes waiting for a core, the CPU time much less
so (it is the better guide to the cost on a quiet machine; cache contention still inflates it).

Each build starts with jieba's block cache empty (:func:`notefeed.search.text.clear_caches`),
so the hybrid build does not reuse the segmentation of the BM25 one. ``workers`` is
``SearchConfig.build_workers`` (processes segmenting Chinese text); the 1-minute load average
before and after each build is recorded, the machine being shared. ``dense_ann`` builds the
full pipeline once per approximate dense index kind (``SearchConfig.dense_ann``), side by side;
each row also gives the share of the exact dense top ``dense_k`` its index returns.
``in_process`` adds one more build of the first of them with the dense vectors computed in
this process (``dense_process_min=0``): the worker process's effect, measured in the same run.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from notefeed.recall.ann import AnnIndex
from notefeed.registry import Registry
from notefeed.search.config import SearchConfig
from notefeed.search.lexical import LexicalIndex
from notefeed.search.pipeline import SearchPipeline, small_creator_lookup
from notefeed.search.text import clear_caches
from notefeed.search.tokens import analyze_catalogue

__all__ = ["BENCH_CORPORA", "BenchCorpus", "bench_search"]


@dataclass
class BenchCorpus:
    """What the bench indexes and asks: ``notes`` (a notes frame), ``queries``, the seconds it
    took to make them (``generate_s``), the share of notes in Chinese (``zh_notes``) and the
    random generator that then draws each hybrid query's user history; ``small_creator``
    (n_notes,) bool: the note's creator has under 1,000 followers (hybrid queries then follow
    the small-creator rule, as served)."""

    notes: pd.DataFrame
    queries: list[str]
    generate_s: float
    zh_notes: float
    rng: np.random.Generator
    small_creator: np.ndarray | None = None


#: name -> ``fn(n_notes, n_queries, seed) -> BenchCorpus``; ``sim`` (``notefeed bench search``'s)
#: is registered by :mod:`notefeed.sim.search_data` (the search stage does not import the simulator)
BENCH_CORPORA: Registry[BenchCorpus] = Registry("search bench corpus")


def _pct(ms: list[float], cpu: list[float] | None = None) -> dict[str, float]:
    a = np.asarray(ms)
    out = {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
           "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}
    if cpu is not None:
        c = np.asarray(cpu)
        out.update({"cpu_p50_ms": float(np.percentile(c, 50)), "cpu_p99_ms": float(np.percentile(c, 99))})
    return out


def _cpu() -> float:
    """CPU seconds of this process (all threads) and of its finished child processes (the dense
    worker, segmenting workers): a build's whole CPU cost."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def dense_recall(pipe: SearchPipeline, queries: list[str]) -> dict[str, object]:
    """How much of the exact dense top ``dense_k`` the pipeline's FAISS index returns for
    ``queries`` (mean share per query with a dense vector), against an exact inner-product
    search over the same note vectors."""
    if pipe.dense is None:
        return {}
    k = pipe.config.dense_k
    qv = np.stack([pipe.dense.encode_query(pipe.understanding.parse(q, rewrite=False)) for q in queries])
    qv = qv[np.any(qv, axis=1)]
    if not len(qv):
        return {}
    ids, vecs = pipe.dense.vectors()
    exact = AnnIndex(vecs.shape[1], kind="flat")
    exact.add(vecs, ids)
    _, want = exact.search(qv, k)
    _, got = pipe.dense.ann.search(qv, k)
    share = [len(set(g[g >= 0].tolist()) & set(w[w >= 0].tolist())) / max(int((w >= 0).sum()), 1)
             for g, w in zip(got, want, strict=True)]
    return {"dense_recall_at_k": float(np.mean(share)), "dense_k": k, "dense_recall_queries": len(qv)}


def bench_search(corpus: BenchCorpus, seed: int = 0, workers: int = 1, hybrid: bool = True,
                 index_threads: int = 1, dense_ann: Sequence[str] = ("ivf",),
                 in_process: bool = False) -> dict[str, object]:
    notes, queries, rng = corpus.notes, corpus.queries, corpus.rng
    n_notes, n_queries = len(notes), len(queries)
    out: dict[str, object] = {"notes": n_notes, "queries": n_queries, "generate_s": round(corpus.generate_s, 2),
                              "build_workers": workers, "index_threads": index_threads,
                              "zh_notes": corpus.zh_notes}
    from notefeed.content.text import _jieba

    _jieba().initialize()  # the dictionary load (~1 s) is not a build cost
    # BM25 alone: analysis + tantivy
    clear_caches()
    load0 = _load()
    t, c = time.perf_counter(), _cpu()
    docs = analyze_catalogue(notes, workers)
    analyze_s, analyze_cpu = time.perf_counter() - t, _cpu() - c
    t, c = time.perf_counter(), _cpu()
    lex = LexicalIndex(heap_mb=SearchConfig().index_heap_mb, threads=index_threads)
    lex.add_tokens(docs, np.arange(len(notes), dtype=np.int64))
    index_s, index_cpu = time.perf_counter() - t, _cpu() - c
    del docs
    bm25 = SearchPipeline.build(notes.iloc[:0], SearchConfig(dense=False))
    bm25.lexical, bm25.understanding.df = lex, lex.df
    bm25.understanding.n_docs = lambda: lex.n_docs
    lat, cpu = [], []
    for q in queries[:20]:
        bm25.understanding.parse(q)
    for q in queries:
        s, sc = time.perf_counter(), time.process_time()
        bm25.lexical.retrieve(bm25.understanding.parse(q, rewrite=False), 10)
        lat.append((time.perf_counter() - s) * 1e3)
        cpu.append((time.process_time() - sc) * 1e3)
    out["bm25"] = {"build_s": round(analyze_s + index_s, 2), "analyze_s": round(analyze_s, 2),
                   "tantivy_s": round(index_s, 2), "notes_per_s": n_notes / (analyze_s + index_s),
                   "build_cpu_s": round(analyze_cpu + index_cpu, 2), "analyze_cpu_s": round(analyze_cpu, 2),
                   "tantivy_cpu_s": round(index_cpu, 2), "notes_per_cpu_s": n_notes / (analyze_cpu + index_cpu),
                   "load_before_after": [load0, _load()], **_pct(lat, cpu)}
    if not hybrid:
        return out
    # the full pipeline, once per approximate dense index asked for (the config's default first
    # unless named otherwise); every build starts with empty caches
    arms = [(ann, None) for ann in dense_ann] + ([(dense_ann[0], 0)] if in_process else [])
    hist = [rng.choice(n_notes, 30, replace=False) for _ in range(n_queries)]  # the same users for every arm
    small = small_creator_lookup(corpus.small_creator) if corpus.small_creator is not None else None
    out["small_creator_rule"] = small is not None
    for ann, process_min in arms:
        tags = ([ann] if ann != SearchConfig().dense_ann else []) + (["in process"] if process_min is not None else [])
        key = "hybrid+personal" + (f" ({', '.join(tags)})" if tags else "")
        clear_caches()
        gc.collect()
        load0 = _load()
        over = {} if process_min is None else {"dense_process_min": process_min}
        t, c = time.perf_counter(), _cpu()
        pipe = SearchPipeline.build(notes, SearchConfig(build_workers=workers, index_threads=index_threads,
                                                        dense_ann=ann, **over), seed=seed)
        build_s, build_cpu = time.perf_counter() - t, _cpu() - c
        load1 = _load()
        for q in queries[:20]:
            pipe.search(q, 10, small_creator=small)
        lat, cpu = [], []
        for q, h in zip(queries, hist, strict=True):
            s, sc = time.perf_counter(), time.process_time()
            pipe.search(q, 10, history=h, small_creator=small)
            lat.append((time.perf_counter() - s) * 1e3)
            cpu.append((time.process_time() - sc) * 1e3)
        out[key] = {"build_s": round(build_s, 2), "notes_per_s": n_notes / build_s,
                    "build_cpu_s": round(build_cpu, 2), "notes_per_cpu_s": n_notes / build_cpu,
                    "load_before_after": [load0, load1, _load()],
                    "dense_index": pipe.dense.ann.kind if pipe.dense else None,
                    **dense_recall(pipe, queries), **_pct(lat, cpu)}
        del pipe
    return out
