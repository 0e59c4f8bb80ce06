"""Session 40's build timed as session 36's script times it (``round36/timeline.py``: its
``timed`` helper and record, loaded from there), with the parts the build has now: ``analysis
(shared)``, this process's pieces of the analysis and the wait for the worker's (which fits the
dense encoder first); ``topic mixtures``, this process's share of the notes' mixtures (each
piece counted where it is computed) and the wait for the worker's.
The record also has the CPU seconds of the worker process (``worker_cpu_s``, user + system).

``python3 docs/results/search/round40/timeline.py [notes] [folder]`` writes ``timeline_<notes>.json``
here (or in ``folder``: a later session's timing of its own code by the same script).
"""
import json
import resource
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # the worker process (spawned) imports this file too
    sys.path.insert(0, str(Path(__file__).parents[1] / "round36"))
    import timeline as t36  # session 36's helpers (its own run is under its __main__)

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    notes = t36.bench_corpus(n, 10, 0).notes
    t36._jieba().initialize()
    D, P, timed = t36.D, t36.P, t36.timed
    for owner, name, label in [(P.NoteTokens, "concat", "analysis: pieces joined"),
                               (D.DenseJob, "encode", "dense: words handed over"),
                               (P.CategoryModel, "fit_codes", "category model"),
                               (P, "counts_of_ids", "topic counts (fitting notes)"),
                               (P, "refine_log_lik", "refined likelihoods"), (P.LexicalIndex, "add_tokens", "tantivy"),
                               (P, "Suggester", "suggester"), (D.DenseJob, "result", "wait dense"),
                               (D.DenseIndex, "of_vectors", "dense: FAISS index"),
                               (P.SearchPipeline, "_add_meta", "catalogue tags")]:
        timed(owner, name, label)
    real_share = D.DenseJob.share

    def share(self, fn, tasks):  # the returned getter timed: this process's share and the wait
        get = real_share(self, fn, tasks)
        box = type("Getter", (), {"get": staticmethod(get)})
        timed(box, "get", {"analyze_catalogue": "analysis (shared)", "topics_of_ids": "topic mixtures"}[fn.__name__])
        return box.get

    D.DenseJob.share = share
    t36.clear_caches()
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t36.START[0], c = time.perf_counter(), time.process_time()
    P.SearchPipeline.build(notes, t36.SearchConfig(), seed=0)
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = {"notes": n, "total_wall_s": round(time.perf_counter() - t36.START[0], 1),
           "main_cpu_s": round(time.process_time() - c, 1),
           "worker_cpu_s": round(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime, 1),
           "parts": t36.LOG, "machine": t36.machine_info(),
           "command": " ".join(["python3 docs/results/search/round40/timeline.py", *sys.argv[1:]])}
    path = (Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).parent) / f"timeline_{n}.json"
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
