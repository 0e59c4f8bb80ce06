"""How far can the simulator's search NDCG@10 go? The learned + personalised fusion with one
extra column each, fitted and scored as ``notefeed eval --stage search`` does (trees on the
training half of the queries, NDCG@10 on the test half's original queries):

- ``true affinity``: the user's true affinity to each candidate (what grade 3 is cut from);
- ``true mixture . true interest``: the note's true topic mixture dotted with the user's
  true long-term interests (no per-note noise, no short-term topic);
- ``true mixture . history mixture``: the true note mixture, the user estimated from the mean
  true mixture of their history notes (the eval's history: positives, answers removed);
- ``estimated mixture . true interest``: the pipeline's own note mixtures
  (:mod:`notefeed.search.topics`), the user's true interests.
- ``popularity`` and ``item-item co-engagement`` (from users outside the test queries, so no
  answer leaks): collaborative signals the pipeline could add.

``python3 docs/results/search/oracle/oracle.py [seed]`` writes ``oracle_sim-demo_seed<seed>.json``
here. Diagnostic only: the oracle columns read the simulator's ground truth.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

import notefeed.sim.search_data  # noqa: F401  (registers the sim query sets)
from notefeed.search.config import SearchConfig
from notefeed.search.evaluate import _run, graded_metrics, load_queries
from notefeed.search.fusion import TREE_PARAMS
from notefeed.search.pipeline import SearchPipeline
from notefeed.search.queries import positives
from notefeed.search.trees import fit_forest
from notefeed.sim.community import generate

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
t0 = time.time()
qs, rel_min = load_queries("sim-demo", seed, False)
com = generate("demo", seed=seed)
W = com.world
pos = positives(com.history())
users_with = np.array(sorted(u for u, p in pos.items() if len(p) >= 3), np.int64)
order = np.random.default_rng(seed).permutation(len(users_with))  # sim_queries' first draw: its test users
test_users = set(users_with[order[: max(1, len(order) // 2)]].tolist())
n = len(qs.notes)
pairs = [(u, i) for u, p in pos.items() if u not in test_users for i in np.unique(p).tolist()]
R = sp.csr_matrix((np.ones(len(pairs), np.float32), tuple(np.array(pairs).T)), shape=(max(pos) + 1, n))
cnt = np.asarray(R.sum(0)).ravel()
C = (R.T @ R).tocsr()
C.setdiag(0)
C.eliminate_zeros()
pipe = SearchPipeline.build(qs.notes, SearchConfig(), query_log=qs.query_log, seed=seed)
perm = np.random.default_rng(seed).permutation(len(qs))
train, test = qs.subset(np.sort(perm[: len(qs) // 2])), qs.subset(np.sort(perm[len(qs) // 2:]))
cats = pipe.intent.categories
tix = {str(nm): k for k, nm in enumerate(W.vocab.topic_names)}
k_topics = W.topic_vecs.shape[0]


def true_mix(items: np.ndarray) -> np.ndarray:
    out = np.zeros((len(items), k_topics), np.float32)
    for j in range(W.note_topics.shape[1]):
        np.add.at(out, (np.arange(len(items)), W.note_topics[items, j]), W.note_topic_w[items, j])
    return out


def columns(runs: list[dict], q) -> None:
    for r, u, h in zip(runs, q.users.tolist(), q.history, strict=True):
        it, hh = r["items"], np.unique(np.asarray(h, np.int64))
        im = true_mix(it)
        hm = true_mix(hh).mean(0) if len(hh) else np.zeros(k_topics, np.float32)
        ti = np.array([W.user_interest[u][tix[c]] if c in tix else 0.0 for c in cats], np.float32)
        co = np.asarray(C[it][:, hh].sum(1)).ravel() / (np.sqrt(np.maximum(cnt[it], 1)) * np.sqrt(max(len(hh), 1)))
        r["extra"] = {
            "true affinity": com.true_affinity(np.full(len(it), u), it),
            "true mixture . true interest": im @ W.user_interest[u],
            "true mixture . history mixture": im @ hm,
            "estimated mixture . true interest": pipe.topics.dense(it, len(cats)) @ ti,
            "popularity": np.log1p(cnt[it]),
            "item-item co-engagement": co,
        }


tr, te = _run(pipe, train, rewrite=False), _run(pipe, test, rewrite=False)
columns(tr, train)
columns(te, test)
sub = np.flatnonzero(~test.reformulated)
top = max(max(r.values(), default=1) for r in train.relevance) or 1


def ndcg(extra: str | None) -> float:
    def x(r):
        return r["x"] if extra is None else np.column_stack([r["x"], r["extra"][extra]])
    f = fit_forest(np.concatenate([x(r) for r in tr]),
                   np.concatenate([[rel.get(int(i), 0) / top for i in r["items"]] for r, rel in zip(tr, train.relevance, strict=True)]),
                   **TREE_PARAMS)
    ranked = [te[i]["items"][np.argsort(-f.predict(x(te[i])), kind="stable")][:100] for i in sub]
    return graded_metrics(ranked, [test.relevance[i] for i in sub], rel_min)["ndcg@10"]


bm25 = graded_metrics([te[i]["lex"].items for i in sub], [test.relevance[i] for i in sub], rel_min)["ndcg@10"]
rows = [{"column": "none (learned + personalised)", "ndcg@10": ndcg(None)}]
rows += [{"column": c, "ndcg@10": ndcg(c)} for c in te[0]["extra"]]
for r in rows:
    r["x_bm25"] = round(r["ndcg@10"] / bm25, 4)
    r["ndcg@10"] = round(r["ndcg@10"], 4)
out = {"dataset": "sim-demo", "seed": seed, "queries": "original (test half)", "n_queries": int(len(sub)),
       "bm25_ndcg@10": round(bm25, 4), "rows": rows, "wall_s": round(time.time() - t0, 1),
       "command": "python3 docs/results/search/oracle/oracle.py " + str(seed)}
path = Path(__file__).parent / f"oracle_sim-demo_seed{seed}.json"
path.write_text(json.dumps(out, indent=1))
print(json.dumps(out, indent=1))
