"""What the topic-likelihood refinement (``SearchConfig.topic_refine``, ``refine_topics`` in
``notefeed/search/topics.py``) does, on the dev seeds it was chosen on (not the reported seed 0):

- ``mixture_l1``: on ``demo`` seed 1, the mean L1 distance between each note's estimated topic
  mixture (top 4, over the category model's categories) and its true mixture in the simulator,
  with the naive-Bayes likelihoods (0 rounds) and after 3 rounds;
- ``refine_cpu_s``: CPU seconds of 3 rounds on a 100k-note fitting sample (the sample a 1M
  build fits on), from the bench's 200k-note simulated corpus;
- ``eval``: ``notefeed eval --stage search``'s own rows (``evaluate_search``) with 0 and 3
  rounds, learned + personalised fusion, on sim-demo seeds 1-3 and MovieLens seeds 1-2.

``python3 docs/results/search/topic_refine/topic_refine.py`` writes ``topic_refine.json`` here.
"""
import json
import time
from pathlib import Path

import numpy as np

import notefeed.sim.search_data  # noqa: F401  (registers the sim query sets)
from notefeed.eval.timing import machine_info
from notefeed.search.config import SearchConfig
from notefeed.search.evaluate import evaluate_search
from notefeed.search.intent import CategoryModel
from notefeed.search.lexical import analyze_notes
from notefeed.search.topics import TopicTable, note_topics, refine_topics
from notefeed.sim.community import generate
from notefeed.sim.search_data import bench_corpus

out: dict = {"command": "python3 docs/results/search/topic_refine/topic_refine.py"}

# mixtures against the truth, demo seed 1
com = generate("demo", seed=1)
w, notes = com.world, com.notes
docs = analyze_notes(notes)
model = CategoryModel().fit([d["title"] + d["text"] + d["tags"] for d in docs], notes["category"].astype(str).tolist())
k = w.topic_vecs.shape[0]
truth = np.zeros((len(notes), k))
for j in range(w.note_topics.shape[1]):
    np.add.at(truth, (np.arange(len(notes)), w.note_topics[:, j]), w.note_topic_w[:, j])
truth /= truth.sum(axis=1, keepdims=True)
col = {str(n): i for i, n in enumerate(w.vocab.topic_names)}
cmap = np.array([col[c] for c in model.categories])


def l1(m: CategoryModel) -> float:
    est = np.zeros_like(truth)
    est[:, cmap] = TopicTable(*note_topics(docs, m)).dense(np.arange(len(notes)), len(m.categories))
    return float(np.abs(est - truth).sum(axis=1).mean())


out["mixture_l1"] = {"preset": "demo", "seed": 1, "rounds_0": l1(model), "rounds_3": l1(refine_topics(model, docs, 3))}
print(out["mixture_l1"], flush=True)

# cost on a 100k fitting sample
corpus = bench_corpus(200_000, 10, 0)
bdocs = analyze_notes(corpus.notes)
fit = np.random.default_rng(0).choice(len(bdocs), 100_000, replace=False).tolist()
cats = corpus.notes["category"].astype(str).tolist()
bm = CategoryModel().fit([bdocs[j]["title"] + bdocs[j]["text"] + bdocs[j]["tags"] for j in fit], [cats[j] for j in fit])
t, c = time.perf_counter(), time.process_time()
refine_topics(bm, [bdocs[j] for j in fit], 3)
out["refine_cpu_s"] = {"notes": 100_000, "rounds": 3, "cpu_s": time.process_time() - c, "wall_s": time.perf_counter() - t}
print(out["refine_cpu_s"], flush=True)

# the eval's learned + personalised rows, 0 vs 3 rounds
rows = []
for name, seeds in (("sim-demo", (1, 2, 3)), ("movielens-small", (1, 2))):
    for seed in seeds:
        got = {}
        for rounds in (0, 3):
            for r in evaluate_search(name, seed, config=SearchConfig(topic_refine=rounds)):
                if r["method"] == "hybrid-learned+personal" and r["queries"] in ("all", "original"):
                    got[(r["queries"], rounds)] = r["ndcg@10"]
        for q in sorted({q for q, _ in got}):
            rows.append({"dataset": name, "seed": seed, "queries": q, "ndcg@10_rounds_0": got[(q, 0)],
                         "ndcg@10_rounds_3": got[(q, 3)], "difference": got[(q, 3)] - got[(q, 0)]})
            print(rows[-1], flush=True)
out["eval"] = rows
out["machine"] = machine_info()
(Path(__file__).parent / "topic_refine.json").write_text(json.dumps(out, indent=1))
