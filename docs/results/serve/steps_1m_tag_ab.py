"""The served default pipeline of a trained workspace (``notefeed bench steps``'s setting: the
promoted version built in this process, one request at a time), with ``tag/interest`` and
``user-to-user/default`` as before this round (the product over the whole term table, the full
sort of co-users, ``weighted_row_sum`` always sorting: ``docs/results/recall/round21_before.py``)
and as now, side by side: 400 users, the arms alternating twice. Also counts the users whose
page is the same in both arms of a round, and in both rounds of an arm.

    python3 docs/results/serve/steps_1m_tag_ab.py WORKSPACE   # -> steps_1m_tag_ab.json
"""
import gc
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recall"))
import round21_before  # noqa: E402  (docs/results/recall/: the code before this round's speed-ups)

from notefeed.eval.timing import latency_stats, machine_info  # noqa: E402
from notefeed.serve.cli import load_workspace_dataset
from notefeed.serve.config import ServeConfig
from notefeed.serve.versions import engine_from_store
from notefeed.threads import freeze_heap, one_thread

workspace = Path(sys.argv[1])
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
            round21_before.use(arm == "before")
            for uid in chosen:
                _, res = eng.feed(str(uid), 10, "default")
                runs[arm]["total"].append(res.total_ms / 1e3)
                for s in res.stages:
                    runs[arm]["steps"].setdefault(f"{s.kind}:{s.name}", []).append(s.ms / 1e3)
                pages[rnd, arm, uid] = np.asarray(res.items).tolist()
    gc.unfreeze()
    eng.close()
round21_before.use(False)
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
