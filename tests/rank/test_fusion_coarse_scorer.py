import numpy as np
import pytest

from notefeed.rank.base import SCORERS, Scorer
from notefeed.rank.coarse import CoarseRanker
from notefeed.rank.features import FeatureBuilder
from notefeed.rank.finenet import FineConfig
from notefeed.rank.fusion import fuse, offline_objective, tune_fusion
from notefeed.rank.multitask import FineRanker, to_tensors
from notefeed.rank.samples import build_samples
from notefeed.recall.base import UserContext


@pytest.mark.parametrize("mode", ["product", "sum"])
def test_fusion_monotone_in_each_task(mode):
    rng = np.random.default_rng(0)
    preds = {t: rng.random(50) for t in ("click", "like", "share", "dwell")}
    w = {"click": 1.0, "like": 0.5, "share": 0.2, "dwell": 0.3}
    base = fuse(preds, w, mode)
    for t in preds:
        up = dict(preds)
        up[t] = preds[t] + 0.1
        assert np.all(fuse(up, w, mode) > base)
    with pytest.raises(ValueError, match="click"):
        fuse(preds, {"click": -1.0}, mode)


def test_tune_fusion_finds_a_better_weighting():
    rng = np.random.default_rng(1)
    n = 2000
    good = rng.random(n)
    preds = {"click": rng.random(n), "like": good}
    labels = {"click": (rng.random(n) < 0.2).astype(float), "like": (good > 0.8).astype(float)}
    obj = offline_objective(preds, labels, np.repeat(np.arange(100), 20), np.zeros(n, bool), k=5,
                            min_small_share=0.0)
    res = tune_fusion(obj, n_trials=15, seed=0, tasks=("click", "like"))
    assert res["best_value"] >= res["default_value"]
    assert res["best_weights"]["like"] > res["best_weights"]["click"]


@pytest.fixture(scope="module")
def trained(feed):
    fb = FeatureBuilder(feed)
    s = build_samples(feed)
    r = FineRanker(FineConfig(dim=8, expert_dim=16, batch_size=512, epochs=1)).fit(feed, s, fb)
    return feed, fb, s, r


def test_coarse_keep_sizes_and_order(trained):
    ds, fb, s, r = trained
    cr = CoarseRanker(fb)
    x = to_tensors(fb.features(s.users, s.items, s.ts, s.position, s.surface))
    teacher = r.predict(x)["click"]
    cr.fit(x, s.labels["click"], teacher, epochs=1, batch_size=512)
    ctx = UserContext(user_id="u1", user=1)
    items = np.arange(ds.n_items)
    kept = cr.select(ctx, items, 100)
    assert len(kept) == 100 and len(np.unique(kept)) == 100
    sc = cr.scores(ctx, kept)
    assert np.all(np.diff(sc) <= 1e-6)
    out = cr.cascade(ctx, items, (200, 50))
    assert len(out) == 50 and set(out) <= set(items)
    with pytest.raises(ValueError, match="items"):
        cr.scores(ctx, np.array([ds.n_items]))


@pytest.mark.parametrize("ctx", [UserContext(user_id="u3", user=3),
                                 UserContext(user_id="new", user=None, history=np.array([1, 2, 3])),
                                 UserContext(user_id="later", user=10**6)])
def test_scorer_contract_input_order_and_length(trained, ctx):
    ds, fb, s, r = trained
    sc = SCORERS.create("rank/cgc", ranker=r, builder=fb)
    assert isinstance(sc, Scorer) and sc.name == "rank/cgc"
    items = np.array([5, 9, 1, 200, 9])
    out = sc.score(ctx, items)
    assert set(out) == set(r.cfg.tasks)
    rev = sc.score(ctx, items[::-1])
    for t, v in out.items():
        assert v.shape == (5,) and v.dtype == np.float32
        np.testing.assert_allclose(rev[t][::-1], v, rtol=1e-5, atol=1e-6)
        assert v[1] == pytest.approx(v[4], rel=1e-5, abs=1e-6)
    assert all(len(v) == 0 for v in sc.score(ctx, np.array([], np.int64)).values())
