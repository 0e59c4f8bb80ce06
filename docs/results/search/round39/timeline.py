"""Session 39's build timed as session 36's script times it (``round36/timeline.py``: its
``timed`` helper and record, loaded from there), with the parts the build has now: ``topic
counts`` are the input of the likelihoods' refinement and the mixtures, both done by the dense
worker process after the vectors; ``wait topics`` is the wait for them, ``wait dense`` the wait
for the vectors.

``python3 docs/results/search/round39/timeline.py [notes]`` writes ``timeline_<notes>.json`` here.
"""
import importlib.util
import json
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # the worker process (spawned) imports this file too
    spec = importlib.util.spec_from_file_location("round36_timeline", Path(__file__).parents[1] / "round36" / "timeline.py")
    t36 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(t36)  # its body runs only under __main__: this loads the helpers
    D, P, timed = t36.D, t36.P, t36.timed
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    corpus = t36.bench_corpus(n, 10, 0)
    t36._jieba().initialize()
    for owner, name, label in [(D, "note_texts", "dense: note texts"), (P, "analyze_notes", "analysis"),
                               (P.LexicalIndex, "add_tokens", "tantivy"), (P.CategoryModel, "fit", "category model"),
                               (P, "Suggester", "suggester"), (P, "note_counts", "topic counts"),
                               (D.DenseJob, "result", "wait dense"), (D.DenseIndex, "of_vectors", "dense: FAISS index"),
                               (P.SearchPipeline, "_add_meta", "catalogue tags")]:
        timed(owner, name, label)
    real_then = D.DenseJob.then

    def then(self, fn, *args):  # the returned getter timed: the wait for the worker's task
        get = real_then(self, fn, *args)
        box = type("Getter", (), {"get": staticmethod(get)})
        timed(box, "get", "wait topics")
        return box.get

    D.DenseJob.then = then
    t36.clear_caches()
    t36.START[0], c = time.perf_counter(), time.process_time()
    P.SearchPipeline.build(corpus.notes, t36.SearchConfig(), seed=0)
    out = {"notes": n, "total_wall_s": round(time.perf_counter() - t36.START[0], 1),
           "main_cpu_s": round(time.process_time() - c, 1), "parts": t36.LOG, "machine": t36.machine_info(),
           "command": f"python3 docs/results/search/round39/timeline.py {n}"}
    path = Path(__file__).parent / f"timeline_{n}.json"
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
