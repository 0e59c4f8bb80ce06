"""``refit2.py`` with the fine ranker's cross-validated gate (``LTRConfig.gate``).

Ran at commit c918345, where the gate existed and was off by default: ``serve:gate`` turns it
on through the config. ``python3 docs/results/feed/refit/refit3.py <dataset> serve:gate``
writes ``refit3_<dataset>.json`` here, with the gate's out-of-fold figures.
"""
import json
import sys
import tempfile
import time
from pathlib import Path

from notefeed.data.loaders import load_dataset
from notefeed.eval import metrics as M
from notefeed.eval.feed import run_feed, seen_targets
from notefeed.eval.splits import make_split
from notefeed.models.train import train_components
from notefeed.recall import sequential
from notefeed.serve.config import ServeConfig
from notefeed.serve.engine import Engine

cache = {}
orig = sequential.SASRecChannel.fit if hasattr(sequential, "SASRecChannel") else None
cls = [c for c in vars(sequential).values() if isinstance(c, type) and getattr(c, "offline_only", False)][0]
orig = cls.fit
def fit(self, ds):
    key = (len(ds.events), ds.n_users, ds.n_items)
    if key in cache:
        self.__dict__.update(cache[key])
        print("sasrec: cached", flush=True)
        return self
    out = orig(self, ds)
    obj = self if out is None else out
    cache[key] = dict(obj.__dict__)
    return out
cls.fit = fit

name = sys.argv[1]
modes = sys.argv[2].split(",")
ds = load_dataset(name)
split, _ = seen_targets(make_split(ds, "loo"))
cfg = ServeConfig()
res = {}
for spec in modes:
    mode, gate = spec.split(":")
    cfg = ServeConfig().with_overrides(fine={"params": {"gate": "stage.coarse"}}) if gate == "gate" else ServeConfig()
    t0 = time.time()
    fitted, rep = train_components(cfg, split.train, progress=False, seed=0, refit=mode)
    with tempfile.TemporaryDirectory() as tmp:
        eng = Engine(split.train, cfg, Path(tmp), fitted=fitted)
        try:
            eng.at_end_of_log()
            pages, stages, _ = run_feed(eng, split.train, split.test_users, 50, False, 2)
        finally:
            eng.close()
    out = {"hit@10": M.hit_rate_at_k(pages, split.test_items, 10), "ndcg@10": float(M.ndcg_at_k(pages, split.test_items, 10)) if hasattr(M, "ndcg_at_k") else None,
           "fit_s": time.time() - t0, "coarse_valid": rep["coarse"]["valid_hr10_in_candidates"],
           "fine_valid": rep["fine"]["valid_hr10_in_candidates"], "fine_valid_input": rep["fine"]["valid_hr10_input_order"]}
    for s, recs in stages.items():
        out[s] = M.hit_rate_at_k(recs, split.test_items, 10)
    out["fine_gate"] = {k: v for k, v in rep["fine"].items() if k.startswith("gate")}
    print(spec, json.dumps(out), flush=True)
    res[spec] = out
json.dump(res, open(Path(__file__).with_name(f"refit3_{name}.json"), "w"), indent=1)
