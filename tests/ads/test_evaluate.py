import numpy as np

from notefeed.ads.evaluate import METHODS, _auction, _recall_metrics, _train_efficiency, _train_towers, _World
from notefeed.ads.simulate import make_world, sample_queries, tiers
from notefeed.eval.stages import EVAL_STAGES


def test_tiers_split_traffic_in_thirds():
    w = make_world(n_topics=4, n_words=10, n_ads=20, n_users=20, seed=0)
    log = sample_queries(w, 600, np.arange(20), np.random.default_rng(0))
    t = tiers(log)
    share = {g: sum(t[q.text] == g for q in log) / len(log) for g in ("head", "torso", "tail")}
    assert set(t.values()) <= {"head", "torso", "tail"}
    assert share["tail"] > 0.2 and share["head"] > 0.1


def test_tiny_water_level_run():
    w = make_world(n_topics=5, n_words=12, n_ads=120, n_users=60, seed=1)
    rng = np.random.default_rng(1)
    env = _World(w, 1)
    _train_efficiency(env, sample_queries(w, 80, np.arange(30), rng), rng)
    info = _train_towers(env, sample_queries(w, 400, np.arange(30), rng), 1)
    assert info["tower_train_clicks"] > 20 and 0 <= info["tower_valid_recall50"] <= 1
    test = sample_queries(w, 15, np.arange(30, 60), rng)
    rows = _recall_metrics(env, test, tiers(test))
    merged = {r["method"]: r for r in rows if r["channel"] == "merged" and r["tier"] == "all"}
    assert set(merged) == set(METHODS)
    for r in merged.values():
        assert 0 <= r["click_coverage"] <= 1 and 0 <= r["noise_ratio"] <= 1
    assert merged["keyword+semantic"]["click_coverage"] >= merged["keyword"]["click_coverage"]
    assert merged["keyword+twotower"]["click_coverage"] >= merged["keyword"]["click_coverage"]
    a = _auction(env, "keyword+semantic+rewrite", sample_queries(w, 100, np.arange(30, 60), rng), 1)
    assert a["max_overspend_clicks"] < 1.0 and a["revenue"] >= 0
    assert "ads" in EVAL_STAGES


def test_equal_load_calibration_matches_fill():
    from notefeed.ads.evaluate import _matched_load, _reserve_load, _top_ecpms, calibrate_min_ecpm, fill_at

    tops = [np.array([30.0, 10.0]), np.array([20.0]), np.zeros(0), np.array([5.0, 1.0])]
    assert fill_at(tops, 0.0) == 5 / 8
    thr = calibrate_min_ecpm(tops, 3 / 8)
    assert fill_at(tops, thr) <= 3 / 8 and thr == 10.0
    assert calibrate_min_ecpm(tops, 1.0) == 0.0
    w = make_world(n_topics=5, n_words=12, n_ads=120, n_users=60, seed=2)
    rng = np.random.default_rng(2)
    env = _World(w, 2)
    _train_efficiency(env, sample_queries(w, 80, np.arange(30), rng), rng)
    _train_towers(env, sample_queries(w, 400, np.arange(30), np.random.default_rng(9)), 2)
    calib = sample_queries(w, 120, np.arange(30), rng)
    day = sample_queries(w, 120, np.arange(30, 60), rng)
    rows = _reserve_load(env, calib, day, 2, [1.0])
    fills = {r["method"]: r["calibrated_fill"] for r in rows}
    assert fills["keyword+semantic"] <= fills["keyword"] + 1e-9
    assert fills["keyword+semantic"] > 0.8 * fill_at(_top_ecpms(env, "keyword", calib), 0.0)
    natural = {m: _auction(env, m, day, 2) for m in METHODS}
    for r in _matched_load(env, day, 2, natural):
        assert r["channel"] == "auction@equal-load"
        assert all(f <= k for f, k in zip(r["filled"], natural["keyword"]["filled"], strict=True))
        assert r["load_vs_keyword"] > 0.9


def test_pcvr_model_beside_pctr():
    from notefeed.ads.evaluate import _train_pcvr, pcvr_of

    w = make_world(n_topics=5, n_words=12, n_ads=120, n_users=60, seed=3)
    rng = np.random.default_rng(3)
    env = _World(w, 3)
    _train_efficiency(env, sample_queries(w, 80, np.arange(30), rng), rng)
    fit = _train_pcvr(env, sample_queries(w, 600, np.arange(30), rng), sample_queries(w, 300, np.arange(30, 60), rng), 3)
    assert env.pcvr_model is not None and fit["train_conversions"] > 0
    assert fit["pcvr_logloss_model"] > 0 and fit["pcvr_logloss_per_ad"] > 0
    x, _ = env.features("anything", np.arange(5))
    p = pcvr_of(env, x, np.arange(5))
    assert p.shape == (5,) and np.all((p > 0) & (p < 1))
    a = _auction(env, "keyword+semantic", sample_queries(w, 100, np.arange(30, 60), rng), 3, channel="auction@pcvr-model")
    assert a["max_overspend_clicks"] < 1.0
