"""Whether two feed-eval JSONs give the same quality figures, seed by seed.

``python3 docs/results/feed/sasrec_parallel/equal.py A.json[,A2.json...] B.json[,B2.json...]``
compares every float of every baseline and pipeline row (per seed; a single-seed JSON counts as
its ``meta.seed``) except times and latencies, and prints per seed how many figures were
compared and which differ. Round 25: the code before the parallel SASRec networks (3d48fd8)
against the code with them (dee1999), e.g. ``beauty_3d48fd8.json ../beauty.json`` and
``lastfm_seed0_3d48fd8.json,...,lastfm_seed4_3d48fd8.json ../seeds/amd-epyc/lastfm-s3rec.json``.
"""
import json
import sys

TIMES = ("_s", "ms", "p50", "p99", "fit", "eval", "load_avg")


def figures(paths: str) -> dict:
    out = {}
    for path in paths.split(","):
        d = json.load(open(path))
        for r in d["rows"]:
            # a multi-seed run's summary rows carry no seed; a single-seed run's rows are its seed's
            seed = r["seed"] if "seed" in r else (None if d["meta"].get("seeds") else d["meta"].get("seed"))
            if not isinstance(seed, int):
                continue
            for k, v in r.items():
                if isinstance(v, float) and not any(t in k for t in TIMES):
                    out[(seed, r["model"], k)] = v
    return out


a, b = figures(sys.argv[1]), figures(sys.argv[2])
for seed in sorted({k[0] for k in a}):
    keys = [k for k in a if k[0] == seed and k in b]
    diff = [k[1:] for k in keys if a[k] != b[k]]
    print(f"seed {seed}: {len(keys)} figures compared, {len(diff)} differ" + (f": {diff[:8]}" if diff else ""))
