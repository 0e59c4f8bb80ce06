"""The feed eval of ml-100k (300 sampled users) with the held-out-note filter switched off, so
the sample equals the one commits before f625015 draw (docs/results/feed/bisect/)."""

import sys

import notefeed.eval.feed as feed
from notefeed.cli import app

feed.seen_targets = lambda split: (split, 0)  # every test user, as before the filter
sys.argv = ["notefeed", "eval", "--stage", "feed", "--dataset", "movielens-100k", "--users", "300", "--models", "pop",
            "--json", "docs/results/feed/bisect/ml-100k_users300_f331db2_nodrop.json"]
app()
