"""Does an interleaved search page follow the small-creator rule? Seed 0 of sim-demo, 400
queries (the test half: 200), the learned fusion (with personalisation) against RRF: the share
of full pages whose every prefix is at least half small creators' notes, and the small
creators' share of the page, for each ranking alone and for the drafted page, with creators
under 1,000 and (a stress test) under 100 followers counted as small.

    python3 docs/results/search/round42/interleave_rule.py docs/results/search/round42/interleave_rule.json
"""

import json
import subprocess
import sys

import numpy as np

import notefeed.sim.search_data  # noqa: F401  (the sim* query sets)
from notefeed.search.config import SearchConfig
from notefeed.search.evaluate import _floor_met, _prepare
from notefeed.search.pipeline import small_creator_lookup

prep = _prepare("sim-demo", 0, False, SearchConfig(), 400)
pipe = prep.pipe
pipe.fusion = prep.fusions["learned", True]
out = {"commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
       "command": " ".join(["python3"] + sys.argv), "rows": []}
for below in (1000, 100):
    flags = prep.qs.note_followers < below
    of = small_creator_lookup(flags)
    for f in ("rrf", "learned", "interleave"):
        pages = [pipe.search(q, 10, history=prep.test.history[j], fusion=f, small_creator=of).items
                 for j, q in enumerate(prep.test.texts)]
        pages = [p for p in pages if len(p) == 10]
        row = {"small_below": below, "page": f, "pages": len(pages), "pages_half_small@10": _floor_met(pages, flags),
               "small_creator@10": float(np.mean([flags[p].mean() for p in pages]))}
        out["rows"].append(row)
        print(row)
pipe.close()
if len(sys.argv) > 1:
    with open(sys.argv[1], "w") as fh:
        json.dump(out, fh, indent=1)
