import sys, time, json
import numpy as np
from notefeed.ads.recall import SERVING_DEFAULTS
from notefeed.sim.ads_search import SearchAdWorld, run_search_ads, SearchUser
seed = int(sys.argv[1])
# seeds 0-1 ran floors 0, 0.6, 0.65, 0.7, 0.75 at annoy 0, 0.2, 0.6; seeds 2-3 (``--late``) floors
# 0, 0.65, 0.7, 0.75, 0.8 at annoy 0.2, 0.6
late = "--late" in sys.argv
FLOORS = [0.0, 0.65, 0.7, 0.75, 0.8] if late else [0.0, 0.6, 0.65, 0.7, 0.75]
ANNOY = [0.2, 0.6] if late else [0.0, 0.2, 0.6]
w = SearchAdWorld.build(seed, "demo", 6000, 1000, 5)
out = []
for ms in FLOORS:
    SERVING_DEFAULTS["search_semantic_floor"] = ms  # ran as the channel's min_score, before the floor existed
    w._recall.clear()
    for annoy in ANNOY:
        u = SearchUser(annoy=annoy)
        k = run_search_ads(w, "keyword", "natural", u)
        s = run_search_ads(w, "keyword+semantic", "keyword", u)
        row = dict(ms=ms, annoy=annoy, kw_ads=k["ads_per_query"], sem_ads=s["ads_per_query"],
                   d_org_ctr=s["organic_ctr"] - k["organic_ctr"], cpm_rel=s["cpm"] / k["cpm"] - 1,
                   sem_irrel=s["ad_irrelevant_share"], sem_grade=s["ad_grade"], kw_grade=k["ad_grade"], d_sess=s["organic_clicks_per_session"]/k["organic_clicks_per_session"]-1)
        print({a: round(float(b), 4) for a, b in row.items()}, flush=True)
        out.append(row)
json.dump(out, open(f"sweep_seed{seed}.json", "w"))
