import sys, time, json
import numpy as np
from notefeed.ads.recall import SERVING_DEFAULTS
from notefeed.sim.ads_search import SearchAdWorld, run_search_ads, SearchUser
seed = int(sys.argv[1])
t0 = time.time()
w = SearchAdWorld.build(seed, "demo", 6000, 1000, 5)
print("build", round(time.time() - t0), flush=True)
# relevance of candidates by grade for semantic
rel_of = w.queries.relevance
by = {0: [], 1: [], 2: [], 3: []}
kw = {0: [], 1: [], 2: [], 3: []}
for qi in range(0, 6000, 3):
    ids, r = w.candidates("keyword+semantic-unfloored", qi)  # ran as "keyword+semantic", before the floor existed
    for a, x in zip(ids[:20].tolist(), r[:20].tolist()):
        g = rel_of[qi].get(int(w.ad_note[a]), 0)
        by[min(g, 3)].append(x)
for g, v in by.items():
    if v:
        print("grade", g, len(v), np.percentile(v, [10, 25, 50, 75, 90]).round(3), flush=True)
out = []
for floor in [0.05, 0.15, 0.25, 0.35, 0.45]:
    SERVING_DEFAULTS["relevance_floor"] = floor
    w._recall.clear()
    for annoy in [0.0, 0.2, 0.6]:
        u = SearchUser(annoy=annoy)
        k = run_search_ads(w, "keyword", "natural", u)
        s = run_search_ads(w, "keyword+semantic-unfloored", "keyword", u)
        row = dict(floor=floor, annoy=annoy, kw_ads=k["ads_per_query"], sem_ads=s["ads_per_query"],
                   d_org_ctr=s["organic_ctr"] - k["organic_ctr"], kw_cpm=k["cpm"], sem_cpm=s["cpm"],
                   cpm_rel=s["cpm"] / k["cpm"] - 1, rev_rel=s["revenue_per_1k_queries"] / k["revenue_per_1k_queries"] - 1,
                   sem_irrel=s["ad_irrelevant_share"], kw_irrel=k["ad_irrelevant_share"])
        print({a: round(b, 4) for a, b in row.items()}, flush=True)
        out.append(row)
json.dump(out, open(f"relevance_floor_seed{seed}.json", "w"))
