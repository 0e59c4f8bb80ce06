"""Served channels fitted on the whole training split against the rankers' held-out log.

Ran at commit 7cf8934 (before ``train_components(refit=...)`` existed): A is that code's
served system (every channel as fitted on the deepest hold-out log), B the same rankers with
every channel but SASRec fitted again on the whole training split, C with SASRec too.
``python3 docs/results/feed/refit/refit.py <dataset> [B]`` (``B``: A and B only; how the
ml-latest-small run was made) writes ``refit_<dataset>.json`` here: HR@10 of the page and of
each stage's order (recall, coarse/keep, rerank/window = fine, rerank/ssd, coldstart/slots).
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
from notefeed.serve.config import ServeConfig
from notefeed.serve.engine import Engine

name = sys.argv[1]
ds = load_dataset(name)
split, _ = seen_targets(make_split(ds, "loo"))
cfg = ServeConfig()
t0 = time.time()
fitted, rep = train_components(cfg, split.train, progress=False, seed=0)
print("A fit", time.time() - t0, flush=True)
nocfg = cfg.with_overrides(coarse={"scorer": None}, fine={"scorer": None, "model_dir": None})
ONLY_B = len(sys.argv) > 2
if ONLY_B:
    nocfg = nocfg.with_overrides(recall={"channels": [c.model_dump() for c in cfg.recall.channels if c.name != "sequence/sasrec"]})
t0 = time.time()
full, _ = train_components(nocfg, split.train, progress=False, seed=0)
print("channels on full", time.time() - t0, flush=True)

def ev(tag, comps):
    with tempfile.TemporaryDirectory() as tmp:
        eng = Engine(split.train, cfg, Path(tmp), fitted=comps)
        try:
            eng.at_end_of_log()
            pages, stages, _ = run_feed(eng, split.train, split.test_users, 50, False, 2)
        finally:
            eng.close()
    out = {"hit@10": M.hit_rate_at_k(pages, split.test_items, 10)}
    for s, recs in stages.items():
        out[s] = M.hit_rate_at_k(recs, split.test_items, 10)
    print(tag, json.dumps(out), flush=True)
    return out

res = {"A_heldout_channels": ev("A", fitted)}
sas = [k for k in full if "1" == k.split(".")[-1]]
names = {f"recall.channels.{i}": c.name for i, c in enumerate(nocfg.recall.channels)}
idx = {c.name: f"recall.channels.{i}" for i, c in enumerate(cfg.recall.channels)}
full = {idx[names[k]]: v for k, v in full.items()}
B = {**fitted, **{k: v for k, v in full.items() if k != "recall.channels.1"}}
res["B_full_except_sasrec"] = ev("B", B)
if not ONLY_B:
    C = {**fitted, **full}
    res["C_full_all"] = ev("C", C)
json.dump(res, open(Path(__file__).with_name(f"refit_{name}.json"), "w"), indent=1)
