"""Screening of built-in model variants on one dataset, side by side in one process (seed 0).

    python3 docs/results/llm/screening/screen.py sim-tiny '[{"tag": "e10", "epochs": 10}]' out.json

Same split, queries and ranking as ``notefeed eval --stage llm`` (``notefeed.llm.evaluate``);
each variant is BuiltinConfig overrides (max_len 48 as the eval); every variant is also scored
concatenated with the TF-IDF + SVD vectors at weights 0.5 and 0.7 on the model's cosine.
The JSONs in this folder were written by it *before* the training schedule change of this
round (OneCycleLR, the LM loss every 2nd step, no CPU-second budget);
``sim-tiny_epochs_pool.json`` by a first version without the concatenation rows.
"""

import json
import os
import sys
import time

import numpy as np

from notefeed.content.text import TextEncoder
from notefeed.eval.datasets import load_eval_dataset
from notefeed.llm.builtin import BuiltinConfig
from notefeed.llm.corpus import NoteCorpus
from notefeed.llm.evaluate import KS, _split, ranks_of
from notefeed.llm.train import train_builtin

name, variants, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
seed = int(os.environ.get("SEED", 0))
ds = load_eval_dataset(name, seed)
corpus = NoteCorpus.from_dataset(ds)
texts = corpus.texts()
sp = _split(ds, seed, 3000)
res = []


def rec(tag: str, z: np.ndarray, extra: dict) -> None:
    row = {"variant": tag, **extra}
    for seg in ("warm", "new"):
        p = sp[seg]
        r = ranks_of(lambda q: z[q] @ z.T, p[:, 0], p[:, 1])
        for k in KS:
            row[f"{seg}@{k}"] = round(float((r < k).mean()), 4)
    print(json.dumps(row), flush=True)
    res.append(row)
    with open(out, "w") as f:
        json.dump(res, f, indent=1)


c0 = time.process_time()
tf = TextEncoder(dim=128, seed=seed).fit(texts).transform(texts)
rec("tfidf", tf, {"cpu_s": round(time.process_time() - c0, 1)})
print("queries", len(sp["warm"]), len(sp["new"]), flush=True)
for v in variants:
    tag = v.pop("tag")
    c0 = time.process_time()
    lm = train_builtin(corpus, sp["train"], BuiltinConfig(**{"seed": seed, "max_len": 48, **v}))
    z = lm.embed(texts)
    rec(tag, z, {"cpu_s": round(time.process_time() - c0, 1), "steps": lm.info["steps"], "loss": lm.info["final_loss"]})
    for wt in (0.5, 0.7):
        rec(f"{tag}+tfidf{wt}", np.concatenate([np.sqrt(wt) * z, np.sqrt(1 - wt) * tf], 1), {})
