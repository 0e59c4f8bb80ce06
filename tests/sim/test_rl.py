"""Learned exposure control: the policy/rl step's fallbacks, safetensors round trip, export,
and a tiny PPO run that has to find the one knob that matters."""

from __future__ import annotations

import json
import tempfile

import numpy as np
import pytest

from notefeed.models.artifacts import ModelError
from notefeed.serve.config import ConfigError, builtin_config
from notefeed.serve.engine import Engine
from notefeed.serve.exposure import KNOBS, OBS_NAMES, ExposureStep, KnobEnsemble, KnobPolicy, load_policy


def _random_policy(head: str = "box", seed: int = 0) -> KnobPolicy:
    rng = np.random.default_rng(seed)
    d, h = len(OBS_NAMES), 16
    n_out = len(KNOBS) if head == "box" else 5
    layers = [(rng.normal(0, 0.5, (h, d)), rng.normal(0, 0.1, h)), (rng.normal(0, 0.5, (n_out, h)), rng.normal(0, 0.1, n_out))]
    actions = rng.uniform(0, 2, (5, len(KNOBS))) if head == "argmax" else None
    return KnobPolicy(layers, "tanh" if head == "box" else "relu", head, rng.normal(0, 1, d), rng.uniform(0.5, 2, d),
                      actions=actions, meta={"algo": "test"})


@pytest.mark.parametrize("head", ["box", "argmax"])
def test_policy_round_trips_through_safetensors(tmp_path, head) -> None:
    pol = _random_policy(head)
    pol.save(tmp_path / "p")
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["policy.json", "policy.safetensors"]
    back = KnobPolicy.load(tmp_path / "p")
    obs = np.random.default_rng(1).uniform(0, 4, (50, len(OBS_NAMES))).astype(np.float32)
    for o in obs:
        np.testing.assert_array_equal(pol.act(o), back.act(o))
        assert pol.act(o).shape == (len(KNOBS),)
        assert (pol.act(o) >= 0).all() and (pol.act(o) <= 2).all()
    assert back.meta == {"algo": "test"}


def test_bad_policy_files_are_model_errors(tmp_path) -> None:
    with pytest.raises(ModelError, match="not a policy directory"):
        KnobPolicy.load(tmp_path)
    _random_policy().save(tmp_path / "p")
    spec = json.loads((tmp_path / "p" / "policy.json").read_text())
    spec["observation"] = spec["observation"][:-1]  # fewer names than the weights' inputs
    (tmp_path / "p" / "policy.json").write_text(json.dumps(spec))
    with pytest.raises(ModelError, match=r"layer 0 has shape .*, expected \(\*, 14\)"):
        KnobPolicy.load(tmp_path / "p")
    spec["observation"] = spec["observation"] + ["no_such_signal"]
    (tmp_path / "p" / "policy.json").write_text(json.dumps(spec))
    with pytest.raises(ModelError, match="observation or knobs differ"):
        KnobPolicy.load(tmp_path / "p")
    (tmp_path / "p" / "policy.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelError):
        KnobPolicy.load(tmp_path / "p")


def test_ensemble_acts_as_the_mean_of_its_members_and_round_trips(tmp_path) -> None:
    members = [_random_policy(seed=s) for s in range(3)]
    members[0].meta["communities"], members[1].meta["communities"] = [1000, 1001], [1002]
    ens = KnobEnsemble(members, {"note": "x"})
    assert ens.meta["communities"] == [1000, 1001, 1002] and ens.meta["note"] == "x"
    ens.save(tmp_path / "e")
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == ["ensemble.json", "member_0", "member_1", "member_2"]
    back = load_policy(tmp_path / "e")
    assert isinstance(back, KnobEnsemble) and len(back.members) == 3 and back.meta == ens.meta
    obs = np.random.default_rng(2).uniform(0, 4, (40, len(OBS_NAMES))).astype(np.float32)
    spread = 0.0
    for o in obs:
        acts = np.stack([m.act(o) for m in members])
        np.testing.assert_allclose(back.act(o), acts.mean(axis=0), rtol=1e-6, atol=1e-6)
        spread = max(spread, float(np.ptp(acts, axis=0).max()))
    assert spread > 0.1  # the members disagree, so the mean is not any one of them
    assert isinstance(load_policy(tmp_path / "e" / "member_1"), KnobPolicy)  # a plain policy folder stays one
    mixed = KnobEnsemble([_random_policy("box", 5), _random_policy("argmax", 6)])  # member by member
    assert mixed._stack is None and ens._stack is not None
    for o in obs[:10]:
        np.testing.assert_allclose(mixed.act(o), (mixed.members[0].act(o) + mixed.members[1].act(o)) / 2, atol=1e-6)


def test_bad_ensemble_files_are_model_errors(tmp_path) -> None:
    with pytest.raises(ModelError, match="no members"):
        KnobEnsemble([])
    ens = KnobEnsemble([_random_policy(seed=0), _random_policy(seed=1)])
    with pytest.raises(ModelError, match="no nested ensembles"):
        KnobEnsemble([ens])  # type: ignore[list-item]
    ens.save(tmp_path / "e")
    spec_path = tmp_path / "e" / "ensemble.json"
    spec = json.loads(spec_path.read_text())
    for members in (["../p"], [], "member_0", ["member_0", "/etc"]):
        spec_path.write_text(json.dumps({**spec, "members": members}))
        with pytest.raises(ModelError, match="members must be a non-empty list"):
            load_policy(tmp_path / "e")
    spec_path.write_text(json.dumps({**spec, "kind": "policy/rl"}))
    with pytest.raises(ModelError, match="kind must be 'policy/rl-ensemble'"):
        load_policy(tmp_path / "e")
    spec_path.write_text(json.dumps(spec))
    (tmp_path / "e" / "member_1" / "policy.safetensors").unlink()
    with pytest.raises(ModelError, match="member_1: not a policy directory"):
        load_policy(tmp_path / "e")
    spec_path.write_text("{broken")
    with pytest.raises(ModelError, match="cannot read it"):
        load_policy(tmp_path / "e")


def test_a_policy_trained_on_fewer_observations_takes_its_columns_by_name(tmp_path) -> None:
    """A policy saved before an observation was added (its policy.json names fewer) is given the
    full observation and acts on its own columns; alone and inside an ensemble."""
    rng = np.random.default_rng(5)
    names = [n for n in OBS_NAMES if n != "small_gap"]  # as if small_gap were the new one
    d = len(names)
    old = KnobPolicy([(rng.normal(0, 0.5, (8, d)), rng.normal(0, 0.1, 8)), (rng.normal(0, 0.5, (len(KNOBS), 8)),
                      np.zeros(len(KNOBS)))], "tanh", "box", rng.normal(0, 1, d), rng.uniform(0.5, 2, d),
                     observation=names)
    old.save(tmp_path / "old")
    back = KnobPolicy.load(tmp_path / "old")
    assert back.obs_names == tuple(names)
    cols = [OBS_NAMES.index(n) for n in names]
    full = rng.uniform(0, 3, (20, len(OBS_NAMES))).astype(np.float32)

    def by_hand(o: np.ndarray) -> np.ndarray:  # the network fed only its own columns
        x = np.clip((o[cols] - old.obs_mean) / np.sqrt(old.obs_var + old.eps), -old.obs_clip, old.obs_clip)
        x = np.tanh(x @ old.layers[0][0].T + old.layers[0][1]) @ old.layers[1][0].T + old.layers[1][1]
        return np.clip(old.low + (np.clip(x, -1, 1) + 1) / 2 * (old.high - old.low), 0, 2)

    for o in full:
        np.testing.assert_allclose(back.act(o), by_hand(o), atol=1e-5)
        changed = o.copy()
        changed[OBS_NAMES.index("small_gap")] += 5.0  # a signal the old policy never saw
        np.testing.assert_array_equal(back.act(changed), back.act(o))
    ens = KnobEnsemble([back, KnobPolicy.load(tmp_path / "old")])
    assert ens._stack is not None
    np.testing.assert_allclose(ens.act(full[0]), back.act(full[0]), atol=1e-6)
    mixed = KnobEnsemble([back, _random_policy(seed=9)])  # other observation names: member by member
    assert mixed._stack is None
    np.testing.assert_allclose(mixed.act(full[1]), (back.act(full[1]) + mixed.members[1].act(full[1])) / 2, atol=1e-6)


def test_leaders_early_ctr_follows_live_impressions_and_clicks(tiny_history) -> None:
    """``ctr_top``: the fused leaders' clicks over impressions, each shrunk toward all notes'
    CTR by 20 impressions; live impression and click events move it."""
    from notefeed.recall.base import UserContext
    from notefeed.serve.catalog import Catalog
    from notefeed.serve.exposure import observation
    from notefeed.serve.pipeline import CandidateSet

    cat = Catalog(tiny_history)
    impr, clk = cat.exposure()
    ev = tiny_history.events
    assert impr.sum() == (ev["type"] == "impression").sum() and clk.sum() == (ev["type"] == "click").sum()
    items = np.arange(5, dtype=np.int64)
    cs = CandidateSet(items, {"fused": np.linspace(1, 0, 5).astype(np.float32)})
    ctx = UserContext("u0", 0, ts=10**9)
    j = OBS_NAMES.index("ctr_top")

    def expected() -> float:
        i, c = cat.exposure()
        p0 = cat.exposure_totals[1] / cat.exposure_totals[0]
        return float(np.mean((c[items] + 20 * p0) / (i[items] + 20)))

    before = observation(ctx, cs, cat, window=5)[j]
    assert before == pytest.approx(expected(), rel=1e-5)
    cat.count_exposure(np.repeat(items, 50), np.repeat(items, 40))  # the leaders get 80% CTR live
    after = observation(ctx, cs, cat, window=5)[j]
    assert after == pytest.approx(expected(), rel=1e-5) and after > before + 0.2


def test_exposure_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="unknown knobs"):
        builtin_config().with_overrides(exposure={"name": "policy/fixed", "knobs": {"boost": 1.0}})
    with pytest.raises(ConfigError, match=r"knobs must be in \[0, 2.0\]"):
        builtin_config().with_overrides(exposure={"name": "policy/fixed", "knobs": {"small_boost": 3.0}})
    with pytest.raises(ConfigError, match="exposure.name"):
        builtin_config().with_overrides(exposure={"name": "policy/unknown"})


@pytest.fixture(scope="module")
def served(tiny_history):
    """An engine with the policy/rl step; a helper that serves one page and returns the step."""
    def build(**section):
        cfg = builtin_config().with_overrides(exposure={"name": "policy/rl", **section})
        ws = tempfile.TemporaryDirectory()
        eng = Engine(tiny_history, cfg, ws.name)
        step = next(s.component for s in eng.pipelines["default"].steps if isinstance(s.component, ExposureStep))
        return eng, step, ws
    return build


def test_rl_step_falls_back_to_the_fixed_knobs(served, tiny_history, tmp_path) -> None:
    uid = str(tiny_history.users["user_id"].iloc[0])
    fixed = {"small_boost": 1.0, "fresh_boost": 0.0, "explore": 0.5, "interest": 0.0}
    eng, step, ws = served(knobs=fixed)  # no model_dir: fixed knobs, not a fallback
    try:
        _, res = eng.feed(uid, 10)
        assert len(res.items) == 10 and not res.errors
        assert step.last["source"] == "fixed"
        np.testing.assert_allclose(step.last["knobs"], [1.0, 0.0, 0.5, 0.0])
        for bad, why in ((lambda o: np.full(len(KNOBS), np.nan), "non-finite"), (lambda o: np.zeros(2), "answered"),
                         (lambda o: 1 / 0, "ZeroDivisionError")):
            step.controller = bad
            _, res = eng.feed(uid, 10)
            assert len(res.items) == 10 and not res.errors  # the feed never fails
            assert step.last["source"].startswith("fallback") and why in step.last["source"]
            np.testing.assert_allclose(step.last["knobs"], [1.0, 0.0, 0.5, 0.0])
        step.controller = _random_policy().act
        _, res = eng.feed(uid, 10)
        assert step.last["source"] == "policy"
        assert step.fallbacks == 3 and step.requests == 5
        # an observation that is not finite never reaches the policy
        calls = []
        step.controller = lambda o: calls.append(o) or np.ones(len(KNOBS))
        step.observation = lambda ctx, cs, signals=None: np.full(len(OBS_NAMES), np.inf, np.float32)
        _, res = eng.feed(uid, 10)
        assert len(res.items) == 10 and not calls and step.last["source"] == "fallback: observation not finite"
    finally:
        eng.close()
        ws.cleanup()
    eng, step, ws = served(knobs=fixed, model_dir=str(tmp_path / "missing"))  # a bad model_dir
    try:
        _, res = eng.feed(uid, 10)
        assert len(res.items) == 10 and not res.errors
        assert step.controller is None and "not a policy directory" in step.load_error
        assert step.last["source"].startswith("fallback") and step.fallbacks == 1
    finally:
        eng.close()
        ws.cleanup()


@pytest.mark.parametrize("kind", ["policy", "ensemble"])
def test_rl_step_serves_a_saved_policy(served, tiny_history, tmp_path, kind) -> None:
    pol = _random_policy() if kind == "policy" else KnobEnsemble([_random_policy(seed=3), _random_policy(seed=4)])
    pol.save(tmp_path / "p")
    eng, step, ws = served(model_dir=str(tmp_path / "p"))
    try:
        _, res = eng.feed(str(tiny_history.users["user_id"].iloc[1]), 10)
        assert len(res.items) == 10 and step.last["source"] == "policy"
        np.testing.assert_allclose(step.last["knobs"], pol.act(step.last["observation"]), atol=1e-6)
        assert any(s.name == "policy/rl" and s.error is None for s in res.stages)
    finally:
        eng.close()
        ws.cleanup()


def test_cli_ensemble_writes_a_loadable_ensemble(tmp_path) -> None:
    from typer.testing import CliRunner

    from notefeed.cli import app

    for s in range(2):
        _random_policy(seed=s).save(tmp_path / f"p{s}")
    r = CliRunner().invoke(app, ["rl", "ensemble", "--policy", str(tmp_path / "p0"), "--policy", str(tmp_path / "p1"),
                                 "--out", str(tmp_path / "e")])
    assert r.exit_code == 0, r.output
    ens = load_policy(tmp_path / "e")
    o = np.linspace(0, 3, len(OBS_NAMES)).astype(np.float32)
    np.testing.assert_allclose(ens.act(o), (KnobPolicy.load(tmp_path / "p0").act(o)
                                            + KnobPolicy.load(tmp_path / "p1").act(o)) / 2, atol=1e-6)
    r = CliRunner().invoke(app, ["rl", "ensemble", "--policy", str(tmp_path / "p0"), "--policy", str(tmp_path / "p1"),
                                 "--out", str(tmp_path / "e")])
    assert r.exit_code == 2 and "--out:" in r.output and "is not empty" in r.output


# ---------------------------------------------------------------------- agents (stable-baselines3)

def test_exported_ppo_dqn_and_sac_act_as_the_trained_models(tmp_path) -> None:
    pytest.importorskip("stable_baselines3")
    import torch
    from stable_baselines3 import DQN, PPO, SAC
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from notefeed.sim.gym import ExposureEnv
    from notefeed.sim.rl import DISCRETE_KNOBS, _discrete_env, export_policy

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    obs = rng.uniform(0, 4, (20, len(OBS_NAMES))).astype(np.float32)
    for algo in ("ppo", "dqn", "sac"):
        def make(algo=algo):
            e = ExposureEnv(preset="tiny", communities=(1000,), steps=2, requests_per_step=4)
            return _discrete_env(e) if algo == "dqn" else e
        venv = VecNormalize(DummyVecEnv([make]), clip_obs=10.0)
        venv.obs_rms.mean = rng.normal(0, 1, len(OBS_NAMES))
        venv.obs_rms.var = rng.uniform(0.5, 2, len(OBS_NAMES))
        model = (PPO("MlpPolicy", venv, n_steps=16, batch_size=8, seed=0, device="cpu") if algo == "ppo"
                 else SAC("MlpPolicy", venv, learning_starts=8, buffer_size=100, seed=0, device="cpu",
                          policy_kwargs={"net_arch": [32, 32]}) if algo == "sac"
                 else DQN("MlpPolicy", venv, learning_starts=8, buffer_size=100, seed=0, device="cpu"))
        if algo in ("ppo", "sac"):  # a mean action near or past the edge of [-1, 1]: the clip, the tanh
            with torch.no_grad():
                (model.policy.action_net if algo == "ppo" else model.actor.mu).bias.fill_(0.8)
        pol = export_policy(model, venv, algo, check_obs=obs)  # raises if any action differs
        pol.save(tmp_path / algo)
        back = KnobPolicy.load(tmp_path / algo)
        assert back.squash == ("tanh" if algo == "sac" else "clip")
        for o in obs:
            a, _ = model.predict(venv.normalize_obs(o[None]), deterministic=True)
            want = DISCRETE_KNOBS[int(a[0])] if algo == "dqn" else (np.clip(a[0], -1, 1) + 1)
            np.testing.assert_allclose(back.act(o), want, atol=1e-5)
        venv.close()


def _toy_env():
    """Same spaces as ExposureEnv, microseconds a step. The right knobs are known: small_boost
    2 when few small creators lead the candidates (observation ``small_share_top`` < 0.5),
    0.5 otherwise; every other knob costs reward."""
    import gymnasium as gym

    from notefeed.sim.gym import OBS_LIMIT, knobs_of_action

    j = OBS_NAMES.index("small_share_top")

    class Toy(gym.Env):
        observation_space = gym.spaces.Box(-OBS_LIMIT, OBS_LIMIT, (len(OBS_NAMES),), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (len(KNOBS),), np.float32)

        def _obs(self):
            o = self.np_random.uniform(0, 4, len(OBS_NAMES)).astype(np.float32)
            o[j] = self.np_random.uniform(0, 1)
            return o

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.t, self.o = 0, self._obs()
            return self.o, {}

        def step(self, action):
            k = knobs_of_action(action)
            target = 2.0 if self.o[j] < 0.5 else 0.5
            r = -abs(k[0] - target) - 0.25 * float(np.abs(k[1:]).sum())
            self.t += 1
            self.o = self._obs()
            return self.o, r, False, self.t >= 64, {}

    return Toy()


def test_tiny_ppo_learns_the_knob_that_matters(tmp_path, monkeypatch) -> None:
    """A few thousand steps of PPO must learn the state-dependent knob of the toy
    environment, and the exported policy (numpy, as served) must act on it."""
    pytest.importorskip("stable_baselines3")
    import tempfile

    from notefeed.sim.rl import train_agent

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    pol, info = train_agent("ppo", timesteps=2048, seed=0, make_env=_toy_env,
                            algo_kwargs={"n_steps": 256, "batch_size": 64, "n_epochs": 10, "learning_rate": 3e-3,
                                         "gamma": 0.0, "policy_kwargs": {"net_arch": {"pi": [32], "vf": [32]}}})
    assert info["mean_reward_per_step_second_half"] > info["mean_reward_per_step_first_half"] + 0.2
    rng = np.random.default_rng(7)
    obs = rng.uniform(0, 4, (200, len(OBS_NAMES))).astype(np.float32)
    j = OBS_NAMES.index("small_share_top")
    obs[:, j] = rng.uniform(0, 1, 200)
    knobs = np.array([pol.act(o) for o in obs])
    low = obs[:, j] < 0.4  # away from the boundary at 0.5
    high = obs[:, j] > 0.6
    assert knobs[low, 0].mean() > 1.5, knobs[low, 0].mean()
    assert knobs[high, 0].mean() < 1.0, knobs[high, 0].mean()
    assert knobs[:, 1:].mean() < 0.5  # the knobs that only cost
    assert not list(tmp_path.glob("SB3-*"))  # no SB3 log folder left behind in the temp dir


@pytest.mark.parametrize("args, msg", [
    (["rl", "train", "--algo", "a2c", "--out", "x"], "--algo: unknown algorithm 'a2c'"),
    (["rl", "train", "--algo", "dqn", "--residual-to", "t.json", "--out", "x"], "--residual-to: needs --algo ppo or sac"),
    (["rl", "eval", "--seeds", "1000,1"], "--seeds: seeds >= 1000 are the training communities"),
    (["rl", "eval", "--seeds", "1"], "--seeds: intervals need at least two seeds"),
    (["rl", "eval", "--fixed", "a=1,2"], "--fixed: expected NAME="),
    (["rl", "eval", "--policy", "p=/nonexistent"], "--policy: /nonexistent: not a policy directory"),
    (["rl", "ensemble", "--policy", "/nonexistent", "--out", "x"], "--policy: an ensemble needs at least two"),
    (["rl", "ensemble", "--policy", "/nonexistent", "--policy", "/none2", "--out", "/nonexistent-out"],
     "--policy: /nonexistent: not a policy directory"),
    (["rl", "tune", "--preset", "huge", "--json", "x.json"], "--preset: unknown preset 'huge'"),
    (["rl", "train", "--drift-at", "10", "--out", "x"], "--drift-at: must be in [0, 9]"),
    (["rl", "robust", "/nonexistent.json", "--pairs", "a:b", "--json", "o.json"], "REPORTS: /nonexistent.json is not"),
    (["rl", "robust", "/nonexistent.json", "--pairs", "a:b", "--level", "1.5", "--json", "o.json"],
     "--level: must be in [0.5, 1)"),
    (["rl", "train", "--drift-at", "5", "--drift-episodes", "1.5", "--out", "x"], "--drift-episodes: must be in [0, 1]"),
])
def test_cli_bad_flags_are_one_line_errors(args, msg) -> None:
    from typer.testing import CliRunner

    from notefeed.cli import app

    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, r.output
    out = " ".join(r.output.split())
    assert msg in out and "Traceback" not in out


def test_cli_restates_the_algorithms() -> None:
    pytest.importorskip("gymnasium")
    from notefeed.sim import rlcli
    from notefeed.sim.rl import ALGOS

    assert rlcli._ALGOS == ALGOS


def test_training_mean_knobs_of_fixed_knobs_are_those_knobs() -> None:
    """The mean knobs the step sets, request-weighted over the communities: for fixed knobs,
    exactly them (so the mean of a policy is read from what the step applied)."""
    pytest.importorskip("gymnasium")
    from notefeed.sim.rleval import training_mean_knobs

    knobs = {"small_boost": 1.25, "fresh_boost": 0.5, "explore": 0.0, "interest": 1.75}
    res = training_mean_knobs({"name": "policy/fixed", "knobs": knobs}, "tiny", [1000, 1001], 2, 3)
    assert res["communities"] == [1000, 1001] and res["env_seeds"] == [11000, 11001]
    for k, v in knobs.items():
        assert res["knobs"][k] == pytest.approx(v)
    assert all(p["requests"] == 6 for p in res["per_community"].values())
    with pytest.raises(ValueError, match="no communities"):
        training_mean_knobs({"name": "policy/fixed", "knobs": knobs}, "tiny", [], 2, 3)


def test_cli_policy_mean_adds_the_training_mean_arm(tmp_path) -> None:
    """--policy-mean adds NAME-mean at the policy's mean knobs on its training communities
    (from policy.json), compared with tuned and the policy; a policy.json without training
    communities is a one-line error."""
    pytest.importorskip("gymnasium")
    from typer.testing import CliRunner

    from notefeed.cli import app

    pol = _random_policy()
    pol.save(tmp_path / "bare")
    r = CliRunner().invoke(app, ["rl", "eval", "--policy", f"p={tmp_path / 'bare'}", "--policy-mean", "--preset",
                                 "tiny", "--seeds", "0,1", "--steps", "2", "--requests", "2", "--drift-at", "0"])
    assert r.exit_code == 2 and "--policy-mean: p's policy.json names no training communities" in " ".join(r.output.split())
    pol.meta["communities"] = [1000]
    pol.save(tmp_path / "p")
    (tmp_path / "tuned.json").write_text(json.dumps({"knobs": {k: 1.0 for k in KNOBS}}))
    out = tmp_path / "eval.json"
    r = CliRunner().invoke(app, ["rl", "eval", "--policy", f"p={tmp_path / 'p'}", "--policy-mean", "--tuned",
                                 str(tmp_path / "tuned.json"), "--preset", "tiny", "--seeds", "0,1", "--steps", "2",
                                 "--requests", "2", "--drift-at", "0", "--json", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    mean = rep["policy_means"]["p"]
    assert mean["communities"] == [1000]
    arm = rep["stable"]["arms"]["p-mean"]["exposure"]
    assert arm["name"] == "policy/fixed" and arm["knobs"] == mean["knobs"]
    assert mean["knobs"] == mean["per_community"]["1000"]["knobs_mean"]
    assert any(0 < v < 2 for v in mean["knobs"].values())  # a random policy's mean, not a default
    pairs = {(d["a"], d["b"]) for d in rep["stable"]["differences"]}
    assert {("tuned", "p-mean"), ("p-mean", "p"), ("tuned", "p")} <= pairs


def test_robustness_of_a_paired_difference() -> None:
    """Median, seeds each way, Wilcoxon p and the leave-one-out interval of b - a; a difference
    carried by one seed has a leave-one-out lower bound below 0 at that seed."""
    from scipy.stats import wilcoxon

    from notefeed.sim.compare import mean_interval
    from notefeed.sim.rleval import robustness

    a = np.zeros(8)
    b = np.array([0.01, -0.01, 0.02, -0.02, 0.005, -0.005, 0.0, 0.6])  # one seed carries the mean
    r = robustness(a, b)
    assert r["mean"] == pytest.approx(b.mean()) and r["median"] == pytest.approx(np.median(b))
    assert (r["b_above"], r["b_below"], r["n"]) == (4, 3, 8)
    assert r["wilcoxon_p"] == pytest.approx(wilcoxon(b).pvalue)
    loo = [mean_interval(np.delete(b, i).tolist())["lo"] for i in range(8)]
    assert r["loo_lo_min"] == pytest.approx(min(loo)) and r["loo_lo_min_seed"] == int(np.argmin(loo))
    assert r["loo_mean_min"] == pytest.approx(np.delete(b, 7).mean())
    assert r["loo_mean_min"] < 0.01 < r["mean"]
    steady = robustness(a, np.full(8, 0.03) + np.linspace(-0.005, 0.005, 8))
    assert steady["loo_lo_min"] > 0 and steady["b_above"] == 8 and steady["wilcoxon_p"] < 0.01
    with pytest.raises(ValueError, match="at least 3"):
        robustness([0.0, 0.0], [1.0, 2.0])


def _report(seeds, arms, tuned_shift=0.0):
    rng = np.random.default_rng(len(arms))
    runs = {a: [{"seed": s, "objective": float(rng.normal()) + (tuned_shift if a == "tuned" else 0.0),
                 "small_creator_share": 0.6, "interest_coverage": 0.5} for s in seeds] for a in arms}
    runs["tuned"] = [{"seed": s, "objective": 0.1 * s + tuned_shift, "small_creator_share": 0.6,
                      "interest_coverage": 0.5} for s in seeds]
    return {"steps": 20, "requests_per_step": 30, "stable": {"seeds": list(seeds), "runs": runs}}


def test_robust_report_pairs_arms_across_reports() -> None:
    from notefeed.sim.rleval import robust_report

    one, two = _report([3, 5, 8, 9], ["p"]), _report([3, 5, 8, 9], ["q", "r"])
    out = robust_report([one, two], [("tuned", "p"), ("tuned", "q"), ("p", "r")])
    assert list(out) == ["stable"] and out["stable"]["seeds"] == [3, 5, 8, 9]
    d = {(x["a"], x["b"]): x["metrics"]["objective"] for x in out["stable"]["differences"]}
    want = [y["objective"] - 0.1 * s for y, s in zip(two["stable"]["runs"]["q"], [3, 5, 8, 9], strict=True)]
    assert d[("tuned", "q")]["mean"] == pytest.approx(np.mean(want))
    assert d[("tuned", "p")]["loo_lo_min_seed"] in (3, 5, 8, 9)  # a seed id, not an index
    wide = robust_report([one, two], [("tuned", "q")], level=0.99)["stable"]["differences"][0]["metrics"]["objective"]
    assert wide["mean"] == pytest.approx(d[("tuned", "q")]["mean"])  # a Bonferroni level: the same mean, wider
    assert wide["lo"] < d[("tuned", "q")]["lo"] and wide["hi"] > d[("tuned", "q")]["hi"]
    with pytest.raises(ValueError, match="tuned runs differ"):
        robust_report([one, _report([3, 5, 8, 9], ["q"], tuned_shift=0.5)], [("tuned", "q")])
    with pytest.raises(ValueError, match="differ in seeds"):
        robust_report([one, _report([3, 5, 8, 10], ["q"])], [("tuned", "q")])
    with pytest.raises(ValueError, match="no arm 'z'"):
        robust_report([one], [("tuned", "z")])


def test_robust_report_concat_joins_disjoint_seed_sets() -> None:
    from notefeed.sim.rleval import robust_report

    one, two = _report([3, 5, 8], ["p"]), _report([10, 11, 12], ["p", "q"])
    out = robust_report([one, two], [("tuned", "p")], concat=True)["stable"]
    assert out["seeds"] == [3, 5, 8, 10, 11, 12]
    runs = one["stable"]["runs"]["p"] + two["stable"]["runs"]["p"]
    want = [x["objective"] - 0.1 * s for x, s in zip(runs, out["seeds"], strict=True)]
    assert out["differences"][0]["metrics"]["objective"]["mean"] == pytest.approx(np.mean(want))
    assert len(out["small_creator_share_by_seed"]["p"]) == 6 and "q" not in out["small_creator_share_by_seed"]
    with pytest.raises(ValueError, match="no arm 'q'"):
        robust_report([one, two], [("tuned", "q")], concat=True)
    with pytest.raises(ValueError, match="overlap"):
        robust_report([one, _report([8, 9, 10], ["p"])], [("tuned", "p")], concat=True)
    one["stable"]["arms"] = {"tuned": {"exposure": {"name": "policy/fixed", "knobs": {"small_boost": 1.0}}}}
    two["stable"]["arms"] = {"tuned": {"exposure": {"name": "policy/fixed", "knobs": {"small_boost": 1.5}}}}
    with pytest.raises(ValueError, match="configured differently"):
        robust_report([one, two], [("tuned", "p")], concat=True)
