"""The search eval over seeds with the trees fusion regressing the grades (the squared loss
of before session 37), for a side-by-side with ``eval_seeds.json`` (the default, LambdaRank):
``python3 docs/results/search/lambdarank/squared_seeds.py sim-demo 0,4,5,6,7`` writes
``squared_seeds_<dataset>.json`` here, rows and summary rows as ``notefeed eval --stage search
--seeds`` writes them."""
import json
import sys
from pathlib import Path

import notefeed.sim.search_data  # noqa: F401  (registers the sim query sets)
from notefeed.eval.timing import machine_info
from notefeed.search.config import SearchConfig
from notefeed.search.evaluate import evaluate_search, summarize_seeds

name, seeds = sys.argv[1], [int(s) for s in sys.argv[2].split(",")]
rows = [r for s in seeds for r in evaluate_search(name, s, config=SearchConfig(learned_objective="squared"))]
out = {"rows": rows + summarize_seeds(rows), "config": {"learned_objective": "squared"},
       "command": f"python3 docs/results/search/lambdarank/squared_seeds.py {name} {sys.argv[2]}", "machine": machine_info()}
path = Path(__file__).parent / f"squared_seeds_{name}.json"
path.write_text(json.dumps(out, indent=1, default=float))
print("wrote", path)
