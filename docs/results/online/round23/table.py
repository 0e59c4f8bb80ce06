"""Print the worker-scaling runs side by side: python3 docs/results/online/round23/table.py A.json B.json ..."""

import json
import sys
from pathlib import Path

print("| run | gate | workers | rate/worker | client p50 / p90 / p99 ms | server total p99 | queue p99 | late starts |")
print("|---|---|---|---|---|---|---|---|")
for f in sys.argv[1:]:
    d = json.loads(Path(f).read_text())
    gate = "no limit" if "unlimited" in d["config"] else "1"
    for r in d["runs"]:
        e = r["pipelines"]["default"]
        st = e["server_stages"]
        c = e["end_to_end"]
        print(f"| {Path(f).stem} | {gate} | {r['workers']} | {r['rate_per_worker']:g}/s | "
              f"{c['median_ms']:.1f} / {c['p90_ms']:.1f} / {c['p99_ms']:.1f} | {st['total']['p99_ms']:.1f} | "
              f"{st.get('queue', {}).get('p99_ms', float('nan')):.1f} | {r['open_loop']['late_starts']} |")
    for k, v in d.get("by_rate_per_worker", {}).items():
        print(f"|  | ratio two/one at {k} | {v.get('p99_ratio', float('nan')):.2f}x |  |  |  |  |  |")
