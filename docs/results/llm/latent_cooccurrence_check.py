"""Offline check of ``llm/interest``'s ``latent_source: cooccurrence`` before any closed-loop run:
on each world's logged history, how often is a user's top latent category (the best category none
of their last 20 positives has) one of their true long-term interests, by the co-occurrence score
against the log's most engaged category (popularity)? The same among the users who still have a
true interest none of those positives has (the only ones a latent slot can help). Also how well
the log's P(b | a) tracks the true interests' P(b | a) (Pearson over category pairs).

"Engaging" a category in the log was first a count (2 positive events or more, ``count2``); it is
now a share of the user's positives (``COOC_MIN_SHARE``), chosen on seed 1 (the dev seed, the
``sweep`` rows) and reported on seed 0. ``mined_pairs``: categories scored by the co-occurrence note
pairs the related-note model trains on (``notefeed/llm/pairs.py``), instead of by users.

    python3 docs/results/llm/latent_cooccurrence_check.py   # -> latent_cooccurrence_check.json
"""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from notefeed.llm.interest import COOC_MIN_SHARE, InterestChannel, category_cooccurrence
from notefeed.llm.pairs import mine_pairs
from notefeed.recall._common import positive_log
from notefeed.sim.community import sim_dataset
from notefeed.sim.config import preset
from notefeed.sim.world import generate_world

SWEEP = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)


def count_cooccurrence(ds, cat, n_c, min_events=2):
    """The former definition: engaging = ``min_events`` positive events or more."""
    ev = ds.select_events()
    u, c = ev["user"].to_numpy(np.int64), cat[ev["item"].to_numpy(np.int64)].astype(np.int64)
    m = sp.csr_matrix((np.ones(u.size), (u, c)), shape=(int(u.max()) + 1, n_c))
    m.sum_duplicates()
    m.data = (m.data >= min_events).astype(float)
    co = (m.T @ m).toarray()
    cond = co / np.maximum(np.diag(co)[:, None], 1)
    np.fill_diagonal(cond, 0)
    return cond.astype(np.float32)


def pair_categories(ds, cat, n_c):
    """Categories linked by the mined co-occurrence note pairs the related-note model trains on
    (``mine_pairs``): row ``a`` is the share of pairs with a note of ``a`` whose other note is of
    ``b`` (a stand-in for what vectors trained on those pairs could know)."""
    log = positive_log(ds)
    pairs, _ = mine_pairs(log["user"].to_numpy(), log["item"].to_numpy(), log["ts"].to_numpy(), ds.n_items)
    m = np.zeros((n_c, n_c))
    np.add.at(m, (cat[pairs[:, 0]], cat[pairs[:, 1]]), 1)
    m += m.T
    np.fill_diagonal(m, 0)
    return (m / np.maximum(m.sum(1, keepdims=True), 1)).astype(np.float32)


def check(name, seed, shares):
    w = generate_world(replace(preset(name), seed=seed))
    ds = sim_dataset(None, preset_name=name, seed=seed)
    names = list(w.vocab.topic_names)
    cat = np.array([names.index(c) for c in ds.notes["category"]], np.int32)
    # the channel's own scoring (fit() would also train its language model, which this does not use)
    ch = InterestChannel(latent_level="category", latent_source="cooccurrence")
    ch.categories, ch.item_cat = names, cat
    log = positive_log(ds)  # time-ordered
    by_u: dict[int, list[int]] = {}
    for u, i in zip(log["user"].to_numpy().tolist(), log["item"].to_numpy().tolist(), strict=True):
        by_u.setdefault(u, []).append(i)
    popc = np.bincount(cat[log["item"].to_numpy()], minlength=len(names)).astype(float)
    truth = w.user_interest > 0
    world_user = {v: int(str(k)[1:]) for k, v in ds.user_index.items()}  # simulated user ids are "u<k>"
    ti = truth.astype(float)
    co = ti.T @ ti
    tc = co / np.maximum(np.diag(co)[:, None], 1)
    np.fill_diagonal(tc, 0)

    def hits(cond):
        ch.cat_cond = cond
        hit = pop_hit = open_users = open_hit = open_pop = 0
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
        return {"users": len(by_u), "top_latent_true_cooccurrence": hit / len(by_u),
                "top_latent_true_popularity": pop_hit / len(by_u),
                "users_with_an_unengaged_interest": open_users,
                "their_top_latent_true_cooccurrence": open_hit / max(open_users, 1),
                "their_top_latent_true_popularity": open_pop / max(open_users, 1),
                "pearson_log_vs_true_cond": float(np.corrcoef(cond.ravel(), tc.ravel())[0, 1])}

    out = {"share": hits(category_cooccurrence(ds, cat, len(names))),
           "count2": hits(count_cooccurrence(ds, cat, len(names))),
           "mined_pairs": hits(pair_categories(ds, cat, len(names)))}
    for s in shares:
        out[f"share>={s}"] = hits(category_cooccurrence(ds, cat, len(names), min_share=s))
    return out


out = {"min_share": COOC_MIN_SHARE, "seed0": {}, "sweep_seed1": {}}
for name in ("demo", "demo-cohesive"):
    out["seed0"][name] = check(name, 0, ())
    out["sweep_seed1"][name] = check(name, 1, SWEEP)
    for k in ("seed0", "sweep_seed1"):
        for v, r in out[k][name].items():
            print(k, name, v, round(r["their_top_latent_true_cooccurrence"], 3),
                  "pop", round(r["their_top_latent_true_popularity"], 3), "pearson", round(r["pearson_log_vs_true_cond"], 2))
Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
