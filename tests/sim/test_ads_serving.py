"""``ads.load=serving-pctr`` (notefeed/sim/ads_serving.py): serving's AdServer logs a day, the
efficiency model trains on that log, and a second day runs both pCTRs on the same requests."""

from __future__ import annotations

from notefeed.sim.ads_serving import serving_pctr_seed, serving_pctr_study


def test_one_seed_logs_trains_and_runs_both_arms_on_the_same_requests() -> None:
    r = serving_pctr_seed(3, sizes=(200, 1200, 600))
    d1, arms = r["day1"], r["arms"]
    assert d1["impressions"] > 0 and d1["clicks"] > 0
    assert r["train"]["impressions"] == d1["impressions"]  # every shown ad was logged
    assert r["train"]["clicks"] == d1["clicks"]  # and every click
    assert arms["heuristic"]["requests"] == arms["model"]["requests"] == 600
    for a in (d1, *arms.values()):
        assert a["largest_overspend_clicks"] < 1.0  # budgets: less than one click over
    if r["train"]["written"]:
        off = r["offline_day2"]
        assert off["impressions"] == arms["heuristic"]["impressions"]  # scored on the heuristic arm's log
        assert 0 < off["logloss_model"] < 1 and 0 < off["logloss_heuristic"] < 1
    # the arms differ only in the pCTR: with the model, the day differs
    assert arms["model"] != arms["heuristic"] or not r["train"]["written"]
    again = serving_pctr_seed(3, sizes=(200, 1200, 600))  # reproducible: the pacing draws are seeded
    assert {k: again[k] for k in ("day1", "train", "arms")} == {k: r[k] for k in ("day1", "train", "arms")}


def test_study_rows_pair_the_arms_by_seed() -> None:
    import notefeed.sim.ads_serving as m

    def fake(seed: int, quick: bool = False, explore: float = 0.0) -> dict:
        arm = {"fill": 1.0, "ctr": 0.1, "clicks": 10, "conversions": 2, "cpm": 100.0, "rpm": 200.0, "revenue": 5.0,
               "largest_overspend_clicks": 0.5}
        return {"seed": seed, "day1": {"clicks": 5, "impressions": 50, "cpm": 90.0, "ctr": 0.1, "revenue": 4.5}, "seed_s": 1.0,
                "train": {"written": True, "impressions": 50, "clicks": 5, "holdout": {}, "beats_served": True,
                          "coef": None},
                "arms": {"heuristic": arm, "model": {**arm, "cpm": 100.0 * (1.1 + 0.01 * seed)}},
                "offline_day2": {"logloss_model": 0.3, "logloss_heuristic": 0.31, "auc_model": 0.7,
                                 "auc_heuristic": 0.65, "impressions": 40, "clicks": 4}}

    orig = m.serving_pctr_seed
    m.serving_pctr_seed = fake  # type: ignore[assignment]
    try:
        rows = serving_pctr_study([0, 1, 2])
    finally:
        m.serving_pctr_seed = orig  # type: ignore[assignment]
    model = next(r for r in rows if r["channel"] == "auction/pctr=model")
    assert model["cpm_vs_heuristic"] == 0.11 and model["cpm_vs_heuristic_ci95"][0] < 0.11 < model["cpm_vs_heuristic_ci95"][1]
    assert model["ctr_vs_heuristic"] == 0.0 and model["gate_passed"] == 3
    off = next(r for r in rows if r["channel"] == "offline/day2")
    assert off["logloss_model_minus_heuristic"] == -0.01
