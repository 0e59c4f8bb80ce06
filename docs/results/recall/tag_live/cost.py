"""What ``tag/interest``'s live changes cost at a million notes: the channel fitted on a made-up
catalogue of 1M notes (4 Zipf-distributed tags of 50,000 and one of 50 categories each) and
500,000 clicks; recall before and after 1,000 publishes, the publishes, batches of positive
events (``follow_engagement``), and edits (the first, which builds the by-term table, apart).

``python3 docs/results/recall/tag_live/cost.py`` writes ``cost.json`` here.
"""
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from notefeed.data.dataset import Dataset
from notefeed.eval.timing import machine_info
from notefeed.recall.base import UserContext
from notefeed.recall.tag import TagInterestChannel

rng = np.random.default_rng(0)
n, n_tags = 1_000_000, 50_000
tag_ids = rng.zipf(1.3, (n, 4)) % n_tags
notes = pd.DataFrame({"note_id": [f"n{i}" for i in range(n)],
                      "tags": [[f"t{x}" for x in row] for row in tag_ids.tolist()],
                      "category": [f"c{i % 50}" for i in range(n)]})
clicks = 500_000
events = pd.DataFrame({"user_id": [f"u{x}" for x in rng.integers(0, 100_000, clicks).tolist()],
                       "note_id": [f"n{x}" for x in (rng.zipf(1.2, clicks) % n).tolist()],
                       "ts": np.arange(clicks), "type": "click"})
ds = Dataset.build("tag-cost", events, notes=notes)
out: dict[str, object] = {}
t = time.perf_counter()
ch = TagInterestChannel().fit(ds)
out["fit_s"] = round(time.perf_counter() - t, 2)
out["postings_nnz"], out["terms"] = int(ch.index.nnz), len(ch.term_names)
hist = [rng.integers(0, n, 30) for _ in range(200)]


def recall_ms() -> float:
    t = time.perf_counter()
    for h in hist:
        ch.recall(UserContext("u", None, history=h), 100)
    return round((time.perf_counter() - t) / len(hist) * 1e3, 3)


out["recall_ms_before"] = recall_ms()
t = time.perf_counter()
for j in range(1000):
    tags = [f"t{int(x)}" for x in rng.zipf(1.3, 4) % n_tags] + ([f"new{j % 50}"] if j % 3 == 0 else [])
    ch.add_items(pd.DataFrame({"note_id": [f"p{j}"], "tags": [tags], "category": [f"c{j % 50}"]}))
out["publish_ms_each"] = round((time.perf_counter() - t) / 1000 * 1e3, 3)
hist = [np.r_[h[:25], rng.integers(n, n + 1000, 5)] for h in hist]  # 5 of each 30 notes published since
out["recall_ms_after"] = recall_ms()
t = time.perf_counter()
for _ in range(200):  # 10,000 positives in batches of 50, on the popular notes and the published ones
    batch = np.r_[rng.zipf(1.2, 45) % n, rng.integers(n, n + 1000, 5)]
    ch.observe_positives(batch)
out["positive_batch_of_50_ms"] = round((time.perf_counter() - t) / 200 * 1e3, 3)
out["recall_ms_after_positives"] = recall_ms()
t = time.perf_counter()
ch.replace_items(np.array([3]), pd.DataFrame({"tags": [["t5"]], "category": ["c1"]}))
out["first_edit_ms"] = round((time.perf_counter() - t) * 1e3, 1)
t = time.perf_counter()
for j in range(20):  # the most common tags: the longest term columns to recompute
    ch.replace_items(np.array([j * 7]), pd.DataFrame({"tags": [[f"t{j}", "edited"]], "category": ["x"]}))
out["edit_ms_mean_of_20"] = round((time.perf_counter() - t) / 20 * 1e3, 2)
out["machine"], out["command"] = machine_info(), "python3 docs/results/recall/tag_live/cost.py"
Path(__file__).with_name("cost.json").write_text(json.dumps(out, indent=1))
print(json.dumps({k: v for k, v in out.items() if k != "machine"}, indent=1))
