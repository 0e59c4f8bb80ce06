import sys
import notefeed.eval.feed as F
F.seen_targets = lambda split: (split, 0)
from notefeed.cli import app
sys.argv = ["notefeed", "eval", "--stage", "feed", "--dataset", "movielens-100k", "--users", "300", "--models", "pop", "--json", "docs/results/feed/bisect/ml-100k_users300_f331db2_nodrop.json"]
app()
