"""The served default pipeline of a trained workspace (``notefeed bench steps``'s setting: the
promoted version built in this process, one request at a time), with ``tag/interest`` and
``user-to-user/default`` as before this round (the product over the whole term table, the full
sort of co-users, ``weighted_row_sum`` always sorting) and as now, side by side: 400 users, the arms alternating twice. Also counts
the users whose page is the same in both arms of a round, and in both rounds of an arm.

    python3 docs/results/serve/steps_1m_tag_ab.py WORKSPACE   # -> steps_1m_tag_ab.json
"""
import gc
import json
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from notefeed.eval.timing import latency_stats, machine_info
from notefeed.recall import _common, user2user
from notefeed.recall._common import DENSE_SUM_RATIO, recency_weights
from notefeed.recall.tag import TagInterestChannel
from notefeed.serve.cli import load_workspace_dataset
from notefeed.serve.config import ServeConfig
from notefeed.serve.versions import engine_from_store
from notefeed.threads import freeze_heap, one_thread

workspace = Path(sys.argv[1])
new_tags, new_top = TagInterestChannel.interests, user2user.stable_topk


def old_tags(self, history):
    h = np.asarray(history, np.int64)[-self.n_recent:]
    h = h[(h >= 0) & (h < self.terms.shape[0])]
    if h.size == 0:
        return np.empty(0, np.int64), np.empty(0)
    w = sp.csr_matrix((recency_weights(h.size, self.decay), (np.zeros(h.size, np.int64), h)),
                      shape=(1, self.terms.shape[0]))
    t = (w @ self.terms).tocsr()
    order = np.argsort(-t.data, kind="stable")[: self.n_interests]
    return t.indices[order].astype(np.int64), t.data[order] / max(t.data.sum(), 1e-12)


def old_top(s, k):
    return np.argsort(-s, kind="stable")[:k]


with one_thread():
    ds = load_workspace_dataset(workspace)
    eng = engine_from_store(ds, ServeConfig(), workspace)
    freeze_heap()
    ids = ds.users["user_id"].astype(str).to_numpy()
    chosen = np.random.default_rng(0).choice(ids, min(400, len(ids)), replace=False)
    runs = {a: {"total": [], "steps": {}} for a in ("before", "now")}
    pages = {}
    for rnd, order in enumerate((("before", "now"), ("now", "before"))):
        for arm in order:
            TagInterestChannel.interests = old_tags if arm == "before" else new_tags
            user2user.stable_topk = old_top if arm == "before" else new_top
            _common.DENSE_SUM_RATIO = 0 if arm == "before" else DENSE_SUM_RATIO  # 0: always the sort
            for uid in chosen:
                _, res = eng.feed(str(uid), 10, "default")
                runs[arm]["total"].append(res.total_ms / 1e3)
                for s in res.stages:
                    runs[arm]["steps"].setdefault(f"{s.kind}:{s.name}", []).append(s.ms / 1e3)
                pages[rnd, arm, uid] = np.asarray(res.items).tolist()
    gc.unfreeze()
    eng.close()
TagInterestChannel.interests, user2user.stable_topk, _common.DENSE_SUM_RATIO = new_tags, new_top, DENSE_SUM_RATIO
out = {"workspace": str(workspace), "users": len(chosen), "requests_per_arm": 2 * len(chosen),
       "pages_equal_across_arms_per_round": [sum(pages[r, "before", u] == pages[r, "now", u] for u in chosen)
                                              for r in (0, 1)],
       "pages_equal_across_rounds_per_arm": {a: sum(pages[0, a, u] == pages[1, a, u] for u in chosen)
                                             for a in ("before", "now")},
       "machine": machine_info(),
       "command": f"python3 docs/results/serve/steps_1m_tag_ab.py {workspace}"}
for arm, r in runs.items():
    steps = {k: latency_stats(v) for k, v in r["steps"].items()}
    out[arm] = {"total": latency_stats(r["total"]),
                "steps_p50_p99_ms": {k: [round(v["median_ms"], 3), round(v["p99_ms"], 3)]
                                     for k, v in sorted(steps.items(), key=lambda kv: -kv[1]["p99_ms"])}}
    print(arm, out[arm]["total"], flush=True)
print(out["pages_equal_across_arms_per_round"], out["pages_equal_across_rounds_per_arm"])
Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
