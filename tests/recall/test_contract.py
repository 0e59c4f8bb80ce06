"""Every registered channel: fits, returns Candidates under its own name, sorted, no excluded items."""

from __future__ import annotations

import numpy as np
import pytest

from notefeed.recall import CHANNELS
from notefeed.recall.base import Candidates, RecallChannel, UserContext

SMALL = {"embedding/two-tower": {"dim": 16, "epochs": 1, "buckets": 1024},
         "explore/es-noise": {"tower_params": {"dim": 16, "epochs": 1, "buckets": 1024}},
         "explore/multi-interest": {"n_clusters": 4, "tower_params": {"dim": 16, "epochs": 1, "buckets": 1024}},
         "sequence/sasrec": {"dim": 16, "layers": 1, "epochs": 1, "progress": False}}

NAMES = [n for n in CHANNELS.names() if not n.startswith("test/")]


@pytest.fixture(scope="module")
def fitted(tiny):
    return {n: CHANNELS.create(n, **SMALL.get(n, {})).fit(tiny) for n in NAMES}


def test_names_are_family_slash_name():
    assert len(NAMES) >= 10
    for n in NAMES:
        fam, _, rest = n.partition("/")
        assert fam and rest and n == n.lower()


@pytest.mark.parametrize("name", NAMES)
def test_channel_contract(fitted, name):
    ch = fitted[name]
    assert isinstance(ch, RecallChannel) and ch.name == name
    hist = np.array([0, 4, 8, 12, 16])
    seen = np.array([20, 24, 28])
    ctx = UserContext("u0", 0, history=hist, seen=seen, hidden=np.array([32]), ts=3_000_000)
    c = ch.recall(ctx, 15)
    assert isinstance(c, Candidates) and c.channel == name and c.error is None
    assert len(c) <= 15
    assert (np.diff(c.scores) <= 1e-6).all(), "scores must be descending"
    assert not set(c.items.tolist()) & {0, 4, 8, 12, 16, 20, 24, 28, 32}
    assert len(set(c.items.tolist())) == len(c)
    if name != "social/follow":
        assert len(c) > 0
    # unknown user never raises
    cold = ch.recall(UserContext("stranger", None), 5)
    assert isinstance(cold, Candidates) and cold.channel == name
    assert ch.recall(ctx, 0).items.size == 0


def test_weighted_row_sum_matches_sparse_product():
    import scipy.sparse as sp

    from notefeed.recall._common import weighted_row_sum

    m = sp.random(30, 50, density=0.2, format="csr", random_state=0)
    rows, w = np.array([3, 7, 3, 0]), np.array([0.5, 1.0, 2.0, 0.1])
    cols, vals = weighted_row_sum(m, rows, w)
    dense = w @ m.toarray()[rows]
    np.testing.assert_allclose(vals, dense[cols])
    assert set(cols.tolist()) == set(np.flatnonzero(dense).tolist())
    assert weighted_row_sum(sp.csr_matrix((3, 4)), np.array([1]), np.array([1.0]))[0].size == 0


def test_tag_terms_do_not_depend_on_the_hash_seed(tmp_path):
    """Two processes with different PYTHONHASHSEED build identical term vocabularies."""
    import os
    import subprocess
    import sys

    code = ("from notefeed.sim import generate; from notefeed.recall.tag import item_terms;"
            "ds = generate('tiny').history(); m, names = item_terms(ds);"
            "print('|'.join(names), m.indices.tolist())")
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outs.append(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                   text=True, check=True).stdout)
    assert outs[0] == outs[1]
