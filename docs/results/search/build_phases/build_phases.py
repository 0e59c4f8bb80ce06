"""Where a search index build's time goes: ``SearchPipeline.build`` on the bench's simulated
notes with every part timed (wall and CPU seconds of this process), the dense vectors computed
in this process (``dense_process_min=0``) so that each part's cost is seen on its own; the
default build runs the dense part in a second process beside the rest.

``python3 docs/results/search/build_phases/build_phases.py [notes]`` writes
``build_phases_<notes>.json`` here.
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

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
corpus = bench_corpus(n, 10, 0)
_jieba().initialize()
parts: dict[str, list[list[float]]] = {}


def timed(owner, name, label):
    time_method(owner, name, lambda _start, wall, cpu: parts.setdefault(label, []).append([round(wall, 2), round(cpu, 2)]))


timed(P, "analyze_notes", "lexical: analysis")
timed(P.LexicalIndex, "add_tokens", "lexical: tantivy")
timed(P.CategoryModel, "fit", "category model")
timed(P, "note_topics", "topic mixtures")
timed(P, "Suggester", "suggester")
timed(P.SearchPipeline, "_add_meta", "catalogue tags")
timed(D, "note_texts", "dense: note texts")
timed(D._CatalogueEncoder, "fit", "dense: encoder fit (sample counts, IDF, SVD)")
timed(D._CatalogueEncoder, "transform", "dense: transform (counts + projection), per chunk")
timed(D, "hashed_counts", "dense: term counts (within fit and transform)")
timed(D.DenseIndex, "add_vectors", "dense: FAISS index")
clear_caches()
t, c = time.perf_counter(), time.process_time()
P.SearchPipeline.build(corpus.notes, SearchConfig(dense_process_min=0), seed=0)
out = {"notes": n, "total": [round(time.perf_counter() - t, 2), round(time.process_time() - c, 2)],
       "parts_wall_cpu_s": parts, "machine": machine_info(),
       "command": f"python3 docs/results/search/build_phases/build_phases.py {n}"}
path = Path(__file__).parent / f"build_phases_{n}.json"
path.write_text(json.dumps(out, indent=1))
print(json.dumps(out, indent=1))
