"""The fitting variants of the learned fusion (objective, LambdaRank cut) on one dataset and seed:
``python3 docs/results/search/lambdarank/cut_study.py sim-demo 1 '[{"objective": "squared"}, {"objective": "lambdarank", "ndcg_at": 30}]'``
prints one line per variant: NDCG@10 of the learned + personalised fusion on the test half's
original queries (as ``notefeed eval --stage search``), x BM25, Recall@100, fit seconds.
``cut_study.json`` holds the lines of the runs docs/search.md cites (session 37)."""
import json
import sys
import time

import numpy as np

import notefeed.sim.search_data  # noqa
from notefeed.search.config import SearchConfig
from notefeed.search.evaluate import _labels, _run, graded_metrics, load_queries
from notefeed.search.fusion import LearnedFusion
from notefeed.search.pipeline import SearchPipeline

ds, seed = sys.argv[1], int(sys.argv[2])
variants = json.loads(sys.argv[3])
qs, rel_min = load_queries(ds, seed, False)
pipe = SearchPipeline.build(qs.notes, SearchConfig(), query_log=qs.query_log, seed=seed)
perm = np.random.default_rng(seed).permutation(len(qs))
train, test = qs.subset(np.sort(perm[: len(qs) // 2])), qs.subset(np.sort(perm[len(qs) // 2:]))
tr, te = _run(pipe, train, rewrite=False), _run(pipe, test, rewrite=False)
sub = np.flatnonzero(~test.reformulated) if test.reformulated.any() else np.arange(len(test))
top = max(max(r.values(), default=1) for r in train.relevance) or 1
x, y = _labels(tr, train, True)
sizes = np.array([len(r["items"]) for r in tr])
bm = graded_metrics([te[i]["lex"].items for i in sub], [test.relevance[i] for i in sub], rel_min)["ndcg@10"]
for v in variants:
    t = time.time()
    v = dict(v)
    if v.get("objective") == "lambdarank":
        f = LearnedFusion(model="trees").fit(x, y * top, groups=sizes, **v)
    else:
        f = LearnedFusion(model="trees").fit(x, y, **v)
    ranked = [te[i]["items"][np.argsort(-f.score(te[i]["x"]), kind="stable")][:100] for i in sub]
    m = graded_metrics(ranked, [test.relevance[i] for i in sub], rel_min)
    print(ds, seed, json.dumps(v), round(m["ndcg@10"], 4), "x%.3f" % (m["ndcg@10"] / bm), "r100", round(m["recall@100"], 4), f"{time.time() - t:.0f}s", flush=True)
