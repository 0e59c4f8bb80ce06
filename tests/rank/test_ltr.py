"""rank/ltr: the listwise ranker learns a planted signal and keeps a planted top item."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from notefeed.rank.ltr import Group, ListwiseRanker, LTRConfig, gate_z


def _groups(n: int, m: int, seed: int, planted: bool = True) -> list[Group]:
    rng = np.random.default_rng(seed)
    out = []
    for g in range(n):
        x = rng.standard_normal((m, 4)).astype(np.float32)
        pos = int(rng.integers(m))
        if planted:  # feature 2 (not the first!) marks the chosen item, with noise
            x[pos, 2] += 3.5
        out.append(Group(x, pos, float(g)))
    return out


def _hr1(model: ListwiseRanker, groups: list[Group]) -> float:
    return float(np.mean([np.argmax(model.predict(g.x)) == g.pos for g in groups]))


def test_learns_planted_feature_and_beats_chance():
    cfg = LTRConfig(epochs=15, negatives=20, hidden=16, threads=1)
    model = ListwiseRanker(["a", "b", "planted", "d"], cfg).fit(_groups(400, 30, 0), progress=False)
    test = _groups(200, 30, 1)
    assert _hr1(model, test) > 0.6  # chance is 1/30
    assert model.metrics["valid_hr10_in_candidates"] > 0.8
    # control: with nothing planted the same training finds nothing
    null = ListwiseRanker(["a", "b", "planted", "d"], cfg).fit(_groups(400, 30, 2, planted=False), progress=False)
    assert _hr1(null, _groups(200, 30, 3, planted=False)) < 0.15


def test_state_round_trip_identical_scores():
    model = ListwiseRanker(["a", "b", "c", "d"], LTRConfig(epochs=2, threads=1)).fit(_groups(50, 10, 0), progress=False)
    params, arrays = model.to_state()
    back = ListwiseRanker.from_state(params, arrays)
    x = np.random.default_rng(5).standard_normal((7, 4)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x), back.predict(x))
    assert back.feature_names == ["a", "b", "c", "d"] and back.metrics == model.metrics


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="need >= 10"):
        ListwiseRanker(["a"]).fit([Group(np.zeros((3, 1), np.float32), 0)])
    model = ListwiseRanker(["a", "b", "c", "d"], LTRConfig(epochs=1, threads=1)).fit(_groups(20, 5, 0), progress=False)
    with pytest.raises(ValueError, match="expected"):
        model.predict(np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="does not match"):
        ListwiseRanker.from_state({"feature_names": ["a"]}, {})


def _based_groups(n: int, m: int, seed: int, extra: float) -> list[Group]:
    """Column 0 is a base score that ranks the chosen item well (a noisy logit); column 1
    carries ``extra`` more signal about it; columns 2-3 are noise."""
    rng = np.random.default_rng(seed)
    out = []
    for g in range(n):
        x = rng.standard_normal((m, 4)).astype(np.float32)
        pos = int(rng.integers(m))
        x[pos, 0] += 1.0
        x[pos, 1] += extra
        out.append(Group(x, pos, float(g)))
    return out


def _hr10(scores_of, groups: list[Group]) -> float:
    return float(np.mean([(scores_of(g.x) > scores_of(g.x)[g.pos]).sum() < 10 for g in groups]))


def test_residual_starts_from_its_base_and_only_adds():
    names = ["base", "signal", "n1", "n2"]
    base_order = lambda x: x[:, 0]  # noqa: E731
    # nothing to add (column 1 is noise too): few groups, so a model from scratch loses to the
    # base order; the residual model keeps it within noise
    cfg = LTRConfig(epochs=8, negatives=20, hidden=16, threads=1, residual="base")
    train, test = _based_groups(60, 60, 0, 0.0), _based_groups(600, 60, 1, 0.0)
    res = ListwiseRanker(names, cfg).fit(train, progress=False)
    assert res.metrics["valid_hr10_in_candidates"] >= res.metrics["valid_hr10_residual_base"]
    # a zero-initialised correction: untrained, it is exactly the base score
    fresh = ListwiseRanker(names, LTRConfig(epochs=0, threads=1, residual="base")).fit(train, progress=False)
    x = test[0].x
    np.testing.assert_allclose(fresh.predict(x), x[:, 0], atol=1e-6)
    assert _hr10(res.predict, test) >= _hr10(base_order, test) - 0.03
    # a real extra signal: the residual model learns it on top of the base
    strong = ListwiseRanker(names, cfg).fit(_based_groups(400, 60, 2, 2.0), progress=False)
    test2 = _based_groups(600, 60, 3, 2.0)
    assert _hr10(strong.predict, test2) > _hr10(base_order, test2) + 0.07
    # persisted and loaded with its base
    back = ListwiseRanker.from_state(*strong.to_state())
    np.testing.assert_array_equal(back.predict(x), strong.predict(x))
    # keep_base=False always keeps a trained correction (the best trained epoch), never the base
    ungated = ListwiseRanker(names, LTRConfig(epochs=3, negatives=20, hidden=16, threads=1, residual="base",
                                              keep_base=False)).fit(train, progress=False)
    assert not np.allclose(ungated.predict(x), x[:, 0], atol=1e-4)
    with pytest.raises(ValueError, match="residual score 'nope' uses a feature that is not among"):
        ListwiseRanker(names, LTRConfig(epochs=1, threads=1, residual="nope")).fit(train, progress=False)


def _paged_groups(seed: int, n: int = 600, m: int = 60) -> list[Group]:
    """A log that shows the 10 most exposed candidates (f0), of which the user takes the most
    appealing (f1): the chosen note beats the other candidates on both features, but the
    notes shown beside it and passed over differ from it only in appeal."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = rng.normal(size=(m, 3)).astype(np.float32)
        page = np.argsort(-x[:, 0])[:10]
        pos = int(page[np.argmax(x[page, 1])])
        out.append(Group(x, pos, float(i), np.setdiff1d(page, [pos])))
    return out


def test_impression_term_learns_what_the_page_shows():
    gains = []
    for seed in range(3):
        g = _paged_groups(seed)
        auc = [ListwiseRanker(["f0", "f1", "f2"], LTRConfig(impression_weight=w, seed=seed, epochs=15))
               .fit(g, False).metrics["valid_page_auc"] for w in (0.0, 1.0)]
        assert auc[1] > auc[0], (seed, auc)  # passed-over notes are told from the chosen one better
        gains.append(auc[1] - auc[0])
    assert np.mean(gains) > 0.01
    plain = ListwiseRanker(["f0", "f1", "f2"], LTRConfig(epochs=3)).fit(
        [Group(g.x, g.pos, g.ts) for g in _paged_groups(0, n=100)], False)
    assert "valid_page_auc" not in plain.metrics and plain.metrics["train_page_groups"] == 0


def test_gate_keeps_a_model_that_beats_its_input_score_and_falls_back_to_one_it_cannot_beat():
    cfg = LTRConfig(epochs=10, negatives=20, hidden=16, threads=1, gate="base", gate_folds=4)
    names = ["base", "b", "planted", "d"]
    # the input score (feature 0) is noise, feature 2 marks the chosen item: the model beats it
    beats = ListwiseRanker(names, cfg).fit(_groups(600, 30, 0), progress=False)
    m = beats.metrics
    assert m["gate_passed"] == 1.0 and m["gate_oof_hr10"] > m["gate_oof_base_hr10"] + 0.3 and m["gate_groups"] == 600
    assert m["gate_z"] > cfg.gate_z
    x = _groups(1, 30, 9)[0].x
    assert not np.allclose(beats.predict(x), x[:, 0])
    # the same gain, asked for more evidence than 600 groups give: the input order is passed on
    strict = ListwiseRanker(names, dataclasses.replace(cfg, gate_z=m["gate_z"] + 1.0)).fit(_groups(600, 30, 0), progress=False)
    assert strict.metrics["gate_passed"] == 0.0 and strict.metrics["gate_z"] == m["gate_z"]
    np.testing.assert_array_equal(strict.predict(x), x[:, 0])
    # the input score already puts every chosen item first: nothing can beat it, so the model
    # passes it on exactly (and keeps doing so after a save and load)
    perfect = _groups(300, 30, 1)
    for g in perfect:
        g.x[:, 0] = 0.0
        g.x[g.pos, 0] = 1.0
    kept = ListwiseRanker(names, cfg).fit(perfect, progress=False)
    assert kept.metrics["gate_passed"] == 0.0 and kept.metrics["gate_oof_base_hr10"] == 1.0
    np.testing.assert_array_equal(kept.predict(x), x[:, 0])
    back = ListwiseRanker.from_state(*kept.to_state())
    np.testing.assert_array_equal(back.predict(x), x[:, 0])
    # no such feature (the coarse stage has no input score): trained, not gated
    ungated = ListwiseRanker(["a", "b", "c", "d"], cfg).fit(_groups(30, 5, 0), progress=False)
    assert "gate_passed" not in ungated.metrics


def test_gate_against_a_weighted_sum_of_features_serves_that_sum_when_not_beaten():
    """The coarse stage's gate: the score to beat is a hand-set formula over raw features."""
    names = ["a", "b", "planted", "d"]
    formula = {"a": 1.0, "b": 2.0}
    cfg = LTRConfig(epochs=10, negatives=20, hidden=16, threads=1, gate=formula, gate_folds=4)
    x = _groups(1, 30, 9)[0].x
    # the formula is noise and feature 2 marks the chosen item: the model is kept
    beats = ListwiseRanker(names, cfg).fit(_groups(600, 30, 0), progress=False)
    assert beats.metrics["gate_passed"] == 1.0 and beats.cfg.residual is None
    assert beats.metrics["gate_oof_hr10"] > beats.metrics["gate_oof_base_hr10"] + 0.3
    # a gate that passes serves exactly the model trained without one
    plain = ListwiseRanker(names, dataclasses.replace(cfg, gate=None)).fit(_groups(600, 30, 0), progress=False)
    np.testing.assert_array_equal(beats.predict(x), plain.predict(x))
    # a + 2b puts every chosen item first (neither feature alone does): it cannot be beaten,
    # so the model is replaced by the formula itself, also after a save and load
    perfect = _groups(300, 30, 1)
    for g in perfect:
        g.x[:, 1] = -0.5 * g.x[:, 0]
        g.x[g.pos, 1] += 5.0
    kept = ListwiseRanker(names, cfg).fit(perfect, progress=False)
    assert kept.metrics["gate_passed"] == 0.0 and kept.metrics["gate_oof_base_hr10"] == 1.0
    assert kept.cfg.residual == formula
    want = x[:, 0] + 2.0 * x[:, 1]
    np.testing.assert_allclose(kept.predict(x), want, rtol=1e-6, atol=1e-6)
    back = ListwiseRanker.from_state(*kept.to_state())
    np.testing.assert_allclose(back.predict(x), want, rtol=1e-6, atol=1e-6)
    # a formula naming a feature the model lacks: trained, not gated
    lacks = ListwiseRanker(names, dataclasses.replace(cfg, gate={"a": 1.0, "nope": 1.0})).fit(
        _groups(60, 10, 0), progress=False)
    assert "gate_passed" not in lacks.metrics


def test_gate_z_is_the_paired_mean_over_its_standard_error():
    d = np.array([1.0, 0.0, 0.0, 1.0, -1.0, 1.0, 0.0, 0.0])
    assert gate_z(d) == pytest.approx(d.mean() / (d.std(ddof=1) / np.sqrt(len(d))))
    assert gate_z(np.zeros(50)) == 0.0 and gate_z(np.ones(1)) == 0.0
    assert gate_z(np.ones(5)) == np.inf and gate_z(-np.ones(5)) == -np.inf


def _mean_of_networks(model: ListwiseRanker, x: np.ndarray) -> np.ndarray:
    """The mean of each network's own score (``predict`` of a copy holding that network alone)."""
    scores = []
    for net, mean, std in [(model.net, model.mean, model.std), *model.members]:
        one = ListwiseRanker(model.feature_names, model.cfg)
        one.net, one.mean, one.std = net, mean, std
        scores.append(one.predict(x))
    return np.mean(scores, 0)


def test_bag_serves_the_mean_of_the_model_and_the_gates_fold_models(tmp_path):
    """``bag``: a gate that passes keeps its fold models; the score is the mean of all the
    networks (the model's own score unchanged among them), saved and loaded, updated together.
    A gate that fails serves its score alone, bag or not."""
    names = ["base", "b", "planted", "d"]
    cfg = LTRConfig(epochs=8, negatives=20, hidden=16, threads=1, gate="base", gate_folds=3)
    groups = _groups(400, 30, 0)
    plain = ListwiseRanker(names, cfg).fit(groups, progress=False)
    bag = ListwiseRanker(names, dataclasses.replace(cfg, bag=True)).fit(groups, progress=False)
    assert plain.members == [] and "bag_networks" not in plain.metrics
    assert bag.metrics["gate_passed"] == 1.0 and len(bag.members) == 3 and bag.metrics["bag_networks"] == 4.0
    # the same draws: the gate's numbers and the model itself are those of the fit without the bag
    assert {k: v for k, v in bag.metrics.items() if k not in ("fit_s", "bag_networks")} == \
        {k: v for k, v in plain.metrics.items() if k != "fit_s"}
    x = _groups(1, 30, 9)[0].x
    members = bag.members
    bag.members = []
    np.testing.assert_array_equal(bag.predict(x), plain.predict(x))
    bag.members = members
    np.testing.assert_allclose(bag.predict(x), _mean_of_networks(bag, x), rtol=1e-5, atol=1e-5)
    assert not np.allclose(bag.predict(x), plain.predict(x))  # the fold models moved the score
    assert _hr1(bag, _groups(200, 30, 3)) > 0.6
    back = ListwiseRanker.from_state(*bag.to_state())
    assert len(back.members) == 3
    np.testing.assert_array_equal(back.predict(x), bag.predict(x))
    from notefeed.models import ModelStore  # the model store's files (safetensors + JSON)

    store = ModelStore(tmp_path)
    stored = store.load(store.save({"coarse": bag}))["coarse"]
    assert len(stored.members) == 3
    np.testing.assert_array_equal(stored.predict(x), bag.predict(x))
    # online updates train every network of the bag
    before = [m[0].mlp[0].weight.detach().clone() for m in back.members]
    fit = back.update(_groups(40, 30, 4), passes=1)
    assert fit["groups"] == 40.0
    assert all(not np.array_equal(b.numpy(), m[0].mlp[0].weight.detach().numpy())
               for b, m in zip(before, back.members, strict=True))
    np.testing.assert_allclose(back.predict(x), _mean_of_networks(back, x), rtol=1e-5, atol=1e-5)  # the new weights
    # a residual bag: every network adds the same base score, once in the mean
    res = ListwiseRanker(names, dataclasses.replace(cfg, bag=True, residual="base")).fit(groups, progress=False)
    assert len(res.members) == 3 and res.net.base is not None
    np.testing.assert_allclose(res.predict(x), _mean_of_networks(res, x), rtol=1e-5, atol=1e-5)
    # a gate that fails serves its input score, bag or not
    strict = ListwiseRanker(names, dataclasses.replace(cfg, bag=True, gate_z=1e9)).fit(groups, progress=False)
    assert strict.members == [] and strict.metrics["gate_passed"] == 0.0
    np.testing.assert_array_equal(strict.predict(x), x[:, 0])
