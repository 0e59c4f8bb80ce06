"""Offline check of ``llm/interest``'s ``latent_source: cooccurrence`` before any closed-loop run:
on each world's logged history (seed 0), how often is a user's top latent category (the best
category none of their last 20 positives has) one of their true long-term interests, by the
co-occurrence score against the log's most engaged category (popularity)? The same among the users
who still have a true interest none of those positives has (the only ones a latent slot can
help). Also how well the log's
P(b | a) tracks the true interests' P(b | a) (Pearson over category pairs).

    python3 docs/results/llm/latent_cooccurrence_check.py   # -> latent_cooccurrence_check.json
"""

import json
from pathlib import Path

import numpy as np

from notefeed.llm.interest import InterestChannel, category_cooccurrence
from notefeed.recall._common import positive_log
from notefeed.sim.community import sim_dataset
from notefeed.sim.config import preset
from notefeed.sim.world import generate_world

out = {}
for name in ("demo", "demo-cohesive"):
    w = generate_world(preset(name))
    ds = sim_dataset(None, preset_name=name, seed=0)
    names = list(w.vocab.topic_names)
    cat = np.array([names.index(c) for c in ds.notes["category"]], np.int32)
    # the channel's own scoring (fit() would also train its language model, which this does not use)
    ch = InterestChannel(latent_level="category", latent_source="cooccurrence")
    ch.categories, ch.item_cat = names, cat
    ch.cat_cond = cond = category_cooccurrence(ds, cat, len(names))
    log = positive_log(ds)  # time-ordered
    users, items = log["user"].to_numpy(), log["item"].to_numpy()
    popc = np.bincount(cat[items], minlength=len(names)).astype(float)
    by_u: dict[int, list[int]] = {}
    for u, i in zip(users.tolist(), items.tolist(), strict=True):
        by_u.setdefault(u, []).append(i)
    truth = w.user_interest > 0
    world_user = {v: int(str(k)[1:]) for k, v in ds.user_index.items()}  # simulated user ids are "u<k>"
    hit = pop_hit = 0
    open_users = open_hit = open_pop = 0  # users with a true interest none of their last 20 positives has
    for u, h in by_u.items():
        recent = np.array(h[-ch.n_recent:])
        c = cat[recent]
        s = ch._category_scores(recent, np.zeros(0))
        s[c], p = -1, popc.copy()  # engaged categories out of both argmaxes
        p[c] = -1
        t = truth[world_user[u]]
        hit += bool(t[np.argmax(s)])
        pop_hit += bool(t[np.argmax(p)])
        if (t & (s >= 0)).any():
            open_users += 1
            open_hit += bool(t[np.argmax(s)])
            open_pop += bool(t[np.argmax(p)])
    ti = truth.astype(float)
    co = ti.T @ ti
    tc = co / np.maximum(np.diag(co)[:, None], 1)
    np.fill_diagonal(tc, 0)
    out[name] = {"users": len(by_u), "top_latent_true_cooccurrence": hit / len(by_u),
                 "top_latent_true_popularity": pop_hit / len(by_u),
                 "users_with_an_unengaged_interest": open_users,
                 "their_top_latent_true_cooccurrence": open_hit / max(open_users, 1),
                 "their_top_latent_true_popularity": open_pop / max(open_users, 1),
                 "pearson_log_vs_true_cond": float(np.corrcoef(cond.ravel(), tc.ravel())[0, 1])}
    print(name, out[name])
Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
