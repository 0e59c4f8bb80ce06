"""Leave-last-out recall of the channels on the two-tower index, with that index as HNSW, IVF or
exact, on Taobao (about 55k notes, above the 50k from which ``ann: auto`` is approximate): one
fit (the recall evaluation's split, users and channel settings), the index swapped under it.

- ``hnsw``: ``IndexHNSWFlat`` (M 32, efSearch 128, widened to k), what the channel built before.
- ``ivf-<n>[/e<m>]``: IVF (``ivf_lists``), ``n`` lists searched by the two-tower channel, ``m``
  by the explore channels (without ``/e``: ``n``).
- ``exact``: every note scored.

    python3 docs/results/recall/tower_index_taobao.py   # -> tower_index_taobao.json
"""
import json
import time
from pathlib import Path

import numpy as np

from notefeed.data.loaders import load_dataset
from notefeed.eval.timing import machine_info
from notefeed.recall.ann import AnnIndex
from notefeed.recall.base import UserContext
from notefeed.recall.evaluate import EVAL_CHANNELS, KS, _histories, _metrics, leave_last_out
from notefeed.recall.merge import RecallStage

t0 = time.time()
ON_TOWER = ("embedding/two-tower", "explore/es-noise", "explore/multi-interest")
ds = load_dataset("taobao")
train, users, targets = leave_last_out(ds)
rng = np.random.default_rng(0)
if users.size > 2000:  # as evaluate_recall
    pick = np.sort(rng.choice(users.size, 2000, replace=False))
    users, targets = users[pick], targets[pick]
stage = RecallStage({n: {"quota": KS[-1], **EVAL_CHANNELS[n]} for n in ON_TOWER}).fit(train)
tower = stage.channels["embedding/two-tower"]
hnsw = tower.index
ivf = AnnIndex.of_rows(tower.item_vectors, kind="ivf")
exact = AnnIndex.of_rows(tower.item_vectors, kind="flat")
hists = _histories(train, users)
ts = int(train.events["ts"].max())
out = {"dataset": "taobao", "notes": int(ds.n_items), "test_users": int(users.size),
       "index_kind_built": hnsw.kind, "ivf_lists": int(ivf._base.nlist), "arms": {}}
for arm in ("hnsw", "ivf-32", "ivf-32/e8", "ivf-32/e16", "ivf-64", "exact"):
    nprobe, _, explore = arm[4:].partition("/e") if arm.startswith("ivf") else ("", "", "")
    tower.index = {"hnsw": hnsw, "exact": exact}.get(arm, ivf)
    if nprobe:
        ivf._base.nprobe = int(nprobe)
    for n in ON_TOWER[1:]:
        stage.channels[n].nprobe = int(explore) if explore else None
    per = {n: [] for n in ON_TOWER}
    t1 = time.perf_counter()
    for u, h in zip(users, hists, strict=True):
        ctx = UserContext(str(train.users["user_id"].iat[int(u)]), int(u), history=h, ts=ts)
        lists, _ = stage.run_channels(ctx, cold=False)
        for c in lists:
            per[c.channel].append(c.items[: KS[-1]])
    out["arms"][arm] = {"ms_per_user": (time.perf_counter() - t1) * 1e3 / users.size,
                        **{n: _metrics(per[n], targets, ds.n_items) for n in ON_TOWER}}
    print(arm, {n.split("/")[-1]: round(out["arms"][arm][n]["recall@1000"], 4) for n in ON_TOWER},
          round(out["arms"][arm]["ms_per_user"], 2), flush=True)
out["wall_s"] = time.time() - t0
out["machine"] = machine_info()
out["command"] = "python3 docs/results/recall/tower_index_taobao.py"
Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
