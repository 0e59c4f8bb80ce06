"""When each part of a default 1M search index build runs: ``SearchPipeline.build`` on the
bench's simulated notes with the default config (the dense vectors in a worker process), every
part of this (the main) process timed: its start (seconds from the build's start), wall and CPU
seconds. ``wait dense`` is the wait for the worker's vectors.

``python3 docs/results/search/round36/timeline.py [notes]`` writes ``timeline_<notes>.json`` here.
"""
import json
import sys
import time
from pathlib import Path

import notefeed.search.dense as D
import notefeed.search.pipeline as P
from notefeed.content.text import _jieba
from notefeed.eval.timing import machine_info, time_method
from notefeed.search.config import SearchConfig
from notefeed.search.text import clear_caches
from notefeed.sim.search_data import bench_corpus

START = [0.0]
LOG: list[dict] = []


def timed(owner, name, label):
    time_method(owner, name, lambda start, wall, cpu: LOG.append(
        {"part": label, "start_s": round(start - START[0], 1), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}))


if __name__ == "__main__":  # the worker process (spawned) imports this file too
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    corpus = bench_corpus(n, 10, 0)
    _jieba().initialize()
    for owner, name, label in [(D, "note_texts", "dense: note texts"), (P, "analyze_notes", "analysis"),
                               (P.LexicalIndex, "add_tokens", "tantivy"), (P.CategoryModel, "fit", "category model"),
                               (P, "refine_topics", "refined likelihoods"), (P, "Suggester", "suggester"),
                               (P, "note_topics", "topic mixtures"), (D.DenseJob, "result", "wait dense"),
                               (D.DenseIndex, "of_vectors", "dense: FAISS index"),
                               (P.SearchPipeline, "_add_meta", "catalogue tags")]:
        timed(owner, name, label)
    clear_caches()
    START[0], c = time.perf_counter(), time.process_time()
    P.SearchPipeline.build(corpus.notes, SearchConfig(), seed=0)
    out = {"notes": n, "total_wall_s": round(time.perf_counter() - START[0], 1),
           "main_cpu_s": round(time.process_time() - c, 1), "parts": LOG, "machine": machine_info(),
           "command": f"python3 docs/results/search/round36/timeline.py {n}"}
    path = Path(__file__).parent / f"timeline_{n}.json"
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
