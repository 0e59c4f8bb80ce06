import numpy as np

from notefeed.ads.base import AdRequest
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


def test_conversion_set_is_a_real_subset_of_the_click_set():
    """Water-level ground truth: a pair users would convert on is one they would click on, and the
    conversion set is not almost the click set (at cvr_min 0.05 it held 88% of the clicks)."""
    w = make_world(seed=0)
    clicks = convs = 0
    for q in sample_queries(w, 500, np.arange(2000), np.random.default_rng(0)):
        click = w.true_ctr(q.user, q.topic) >= w.click_min
        conv = click & (w.true_cvr(q.user) >= w.cvr_min)
        clicks, convs = clicks + int(click.sum()), convs + int(conv.sum())
    assert clicks > 0 and 0.5 < convs / clicks < 0.8


def test_tiny_water_level_run():
    w = make_world(n_topics=5, n_words=12, n_ads=120, n_users=60, seed=1)
    rng = np.random.default_rng(1)
    env = _World(w, 1)
    info = _train_towers(env, sample_queries(w, 400, np.arange(30), rng), 1)
    _train_efficiency(env, sample_queries(w, 80, np.arange(30), rng), rng)
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
    _train_towers(env, sample_queries(w, 400, np.arange(30), np.random.default_rng(9)), 2)
    _train_efficiency(env, sample_queries(w, 80, np.arange(30), rng), rng)
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
    _train_towers(env, sample_queries(w, 300, np.arange(30), np.random.default_rng(8)), 3)
    _train_efficiency(env, sample_queries(w, 80, np.arange(30), rng), rng)
    fit = _train_pcvr(env, sample_queries(w, 600, np.arange(30), rng), sample_queries(w, 300, np.arange(30, 60), rng), 3)
    assert env.pcvr_model is not None and fit["train_conversions"] > 0
    assert fit["pcvr_logloss_model"] > 0 and fit["pcvr_logloss_per_ad"] > 0
    x, _ = env.features("anything", np.arange(5))
    p = pcvr_of(env, x, np.arange(5))
    assert p.shape == (5,) and np.all((p > 0) & (p < 1))
    a = _auction(env, "keyword+semantic", sample_queries(w, 100, np.arange(30, 60), rng), 3, channel="auction@pcvr-model")
    assert a["max_overspend_clicks"] < 1.0


def test_evidence_pctr_reads_the_tower_and_rewrite_scores():
    """The default pCTR reads the basic features plus the two-tower cosine and the rewrite score;
    both models are fitted on the same impressions and checked on held-out ones."""
    import pytest

    from notefeed.ads.evaluate import N_BASIC, PCTR_KINDS, _pctr_check

    w = make_world(n_topics=5, n_words=12, n_ads=120, n_users=60, seed=4)
    rng = np.random.default_rng(4)
    env = _World(w, 4)
    q = sample_queries(w, 80, np.arange(30), rng)
    with pytest.raises(ValueError, match="towers"):
        _train_efficiency(env, q, rng)  # the evidence features need the towers
    _train_towers(env, sample_queries(w, 400, np.arange(30), np.random.default_rng(5)), 4)
    fit = _train_efficiency(env, q, rng)
    assert set(env.models) == set(PCTR_KINDS) and env.pctr == "evidence" and env.model is env.models["evidence"]
    assert fit["pctr_train_clicks"] > 0 and "pctr_coef_tower_cos" in fit
    text = w.aliases[0, 0]  # a word no ad contains: no keyword hit, text cosine 0, the tower still scores it
    ids = np.arange(10)
    xe, rel = env.features(text, ids)
    xb, rel_b = env.features(text, ids, "basic")
    assert xe.shape == (10, 7) and xb.shape == (10, N_BASIC) and np.array_equal(xe[:, :N_BASIC], xb)
    assert np.allclose(xe[:, 4], env.channels["semantic/twotower"].scores(text, ids))
    assert np.array_equal(rel, rel_b)
    rw = env.channels["keyword/rewrite"].retrieve(AdRequest(query=text), w.n_ads)
    got = dict(zip(rw.ids.tolist(), rw.scores.tolist(), strict=True))
    assert np.allclose(env.features(text, rw.ids)[0][:, 5], [got[a] for a in rw.ids.tolist()])
    with pytest.raises(ValueError):
        env.features(text, ids, "fancy")
    q0 = w.ad_texts[3][:20]
    first, again = env.encode([q0]), env.encode([q0])  # the cached query vector is the encoder's
    assert again is first and np.array_equal(first, env.enc.transform([q0])) and not first.flags.writeable
    check = _pctr_check(env, sample_queries(w, 200, np.arange(30, 60), np.random.default_rng(6)), 4)
    for k in PCTR_KINDS:
        for tag in ("", "_twotower"):
            assert 0 < check[f"pctr_logloss_{k}{tag}"] < 1 and 0 <= check[f"pctr_auc_{k}{tag}"] <= 1
    env.pctr = "basic"
    assert env.model is env.models["basic"]
    a = _auction(env, "keyword+twotower", sample_queries(w, 60, np.arange(30, 60), rng), 4)
    assert a["impressions"] > 0


def _fake_seed_rows(seed: int) -> list[dict]:
    """Rows of run_seed's shape for the aggregation: keyword and keyword+semantic, equal load,
    both pCTR feature sets; semantic's CPM is keyword's x (1.1 + 0.01 seed), x 1.2 of basic."""
    rows = []
    for suffix, f in (("", 1.2), ("/pctr=basic", 1.0)):
        for ch in ("auction", "auction@equal-load"):
            for m, cpm in (("keyword", 100.0), ("keyword+semantic", 100.0 * (1.1 + 0.01 * seed))):
                c = cpm * f if m != "keyword" else cpm
                rows.append({"dataset": "ad-sim", "method": m, "channel": ch + suffix, "tier": "all", "cpm": c,
                             "rpm": c / 2, "ctr": 0.1, "pctr_logloss_basic": 0.2 + 0.01 * seed,
                             "pctr_logloss_evidence": 0.19 + 0.01 * seed, "seed": seed})
    return rows


def test_resume_file_and_paired_aggregation(tmp_path, monkeypatch):
    """Seeds in the ``ads.resume`` file are read back, not rerun; a file of other settings is
    refused; the aggregate pairs each method with keyword-only and with the basic pCTR per seed."""
    import pytest

    import notefeed.ads.evaluate as ev

    path = tmp_path / "seeds.jsonl"
    key = {"load": "equal", "levels": [1.0], "pctr": "both", "quick": True}
    calls = []

    def fake_run_seed(seed, quick, load, levels, pctr, methods):
        calls.append(seed)
        return _fake_seed_rows(seed)

    monkeypatch.setattr(ev, "run_seed", fake_run_seed)
    params = {"ads": {"load": "equal", "pctr": "both", "resume": str(path)}}
    ev.evaluate_ads(["ad-sim"], None, 0, True, None, seeds=[0, 1], params=params)
    assert calls == [0, 1] and len(path.read_text().splitlines()) == 2
    out = ev.evaluate_ads(["ad-sim"], None, 0, True, None, seeds=[0, 1, 2], params=params)
    assert calls == [0, 1, 2]  # 0 and 1 came from the file
    assert ev._read_resume(path, key).keys() == {0, 1, 2}
    sem = next(r for r in out if r["method"] == "keyword+semantic" and r["channel"] == "auction@equal-load")
    assert sem["seeds"] == 3 and abs(sem["cpm_vs_keyword_paired"] - (1.11 * 1.2 - 1)) < 1e-3
    lo, hi = sem["cpm_vs_keyword_ci95"]
    assert lo < sem["cpm_vs_keyword_paired"] < hi
    assert abs(sem["cpm_vs_basic_pctr"] - 0.2) < 1e-3
    assert abs(sem["pctr_logloss_evidence_minus_basic"] + 0.01) < 1e-6 and "pctr_auc_evidence_minus_basic" not in sem
    basic = next(r for r in out if r["method"] == "keyword+semantic" and r["channel"] == "auction@equal-load/pctr=basic")
    assert "cpm_vs_basic_pctr" not in basic and abs(basic["cpm_vs_keyword_paired"] - 0.11) < 1e-3
    with pytest.raises(ValueError, match="resume"):
        ev.evaluate_ads(["ad-sim"], None, 0, True, None, seeds=[0],
                        params={"ads": {"load": "equal", "pctr": "basic", "resume": str(path)}})
    with pytest.raises(ValueError, match="pctr"):
        ev.evaluate_ads(["ad-sim"], None, 0, True, None, seeds=[0], params={"ads": {"pctr": "magic"}})
