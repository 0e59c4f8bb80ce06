"""``train_components(refit=...)`` modes side by side over several seeds on one split.

``python3 docs/results/feed/refit/refit5.py <dataset> <modes> <seeds>`` (e.g. ``lastfm-s3rec
serve,all 0,1,2,3,4``) writes ``refit5_<dataset>.json`` here. Per seed: the default config
reseeded as ``notefeed eval --stage feed --seeds`` does, SASRec trained once (it is
deterministic for a seed and every mode trains it on the same hold-out log) and reused by the
other modes, each mode's page served to every test user, and ALS / ItemKNN on the same split
with that seed (the best is that seed's baseline, as in the feed eval). Ran at commit f594168.
"""
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from notefeed.data.loaders import load_dataset
from notefeed.eval import metrics as M
from notefeed.eval.feed import _baseline_recs, reseeded, run_feed, seen_targets
from notefeed.eval.splits import make_split
from notefeed.models.train import train_components
from notefeed.recall import sequential
from notefeed.serve.config import ServeConfig
from notefeed.serve.engine import Engine

cache: dict = {}
cls = sequential.SASRecChannel
orig = cls.fit


def fit(self, ds):
    key = (self.seed, len(ds.events), ds.n_users, ds.n_items)
    if key in cache:
        self.__dict__.update(cache[key])
        return self
    out = orig(self, ds)
    cache[key] = dict(self.__dict__)
    return out


cls.fit = fit

name, modes, seeds = sys.argv[1], sys.argv[2].split(","), [int(s) for s in sys.argv[3].split(",")]
ds = load_dataset(name)
split, _ = seen_targets(make_split(ds, "loo"))
train = split.train.interactions()
rows = []
for seed in seeds:
    cfg = reseeded(ServeConfig(), seed)
    base = {}
    for b in ("als", "itemknn"):
        recs, _ = _baseline_recs(b, split, train, 10, seed)
        base[b] = (M.hit_rate_at_k(recs, split.test_items, 10), float(M.ndcg_at_k(recs, split.test_items, 10)))
    best = max(base, key=lambda b: base[b][0])
    for mode in modes:
        t0 = time.time()
        fitted, rep = train_components(cfg, split.train, progress=False, seed=seed, refit=mode, workers=2)
        with tempfile.TemporaryDirectory() as tmp:
            eng = Engine(split.train, cfg, Path(tmp), fitted=fitted)
            try:
                eng.at_end_of_log()
                pages, stages, _ = run_feed(eng, split.train, split.test_users, 10, False, 2)
            finally:
                eng.close()
        hit = M.hit_rate_at_k(pages, split.test_items, 10)
        ndcg = float(M.ndcg_at_k(pages, split.test_items, 10))
        row = {"seed": seed, "mode": mode, "hit@10": hit, "ndcg@10": ndcg, "best_baseline": best,
               "baseline_hit@10": base[best][0], "hit@10_vs_best": hit / base[best][0],
               "ndcg@10_vs_best": ndcg / max(v[1] for v in base.values()), "gate_passed": rep["fine"].get("gate_passed"),
               "s": time.time() - t0, **{f"stage.{s}.hit@10": M.hit_rate_at_k(r, split.test_items, 10)
                                         for s, r in stages.items()}}
        rows.append(row)
        print(json.dumps(row), flush=True)
summary = {}
for mode in modes:
    r = [x["hit@10_vs_best"] for x in rows if x["mode"] == mode]
    h = [x["hit@10"] for x in rows if x["mode"] == mode]
    summary[mode] = {"hit@10_mean": float(np.mean(h)), "hit@10_vs_best": r, "hit@10_vs_best_mean": float(np.mean(r)),
                     "min": float(np.min(r))}
out = Path(__file__).with_name(f"refit5_{name}.json")
out.write_text(json.dumps({"dataset": name, "modes": modes, "seeds": seeds, "rows": rows, "summary": summary}, indent=1))
print(json.dumps(summary, indent=1))
