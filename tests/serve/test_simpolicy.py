"""The serving engine as a closed-loop policy: pages come from the pipeline, reactions go back in."""

import numpy as np

from notefeed.serve.simpolicy import EnginePolicy
from notefeed.sim import SimEnvironment, generate, run_closed_loop
from notefeed.sim.policies import make_policy


def test_pipeline_policy_serves_and_learns_from_reactions(tmp_path):
    community = generate("tiny", seed=0)
    ds = community.history()
    env = SimEnvironment(community, seed=1, dataset=ds)
    policy = EnginePolicy(workspace=tmp_path / "ws")
    try:
        page = policy.recommend(env, 0, 10)
        assert 0 < len(page) <= 10 and len(np.unique(page)) == len(page)
        events = env.respond(0, page)
        policy.observe(events)
        # the items just shown are now seen by the engine's online state: the next page avoids them
        nxt = policy.recommend(env, 0, 10)
        assert not set(nxt.tolist()) & set(page.tolist())
        # notes the environment publishes reach the engine's catalogue
        new = env.publish(3)
        policy.recommend(env, 1, 10)
        ids = set(policy.engine.catalog.note_ids)
        assert set(env.notes_frame(new)["note_id"]) <= ids
        result = run_closed_loop(env, policy, steps=2, requests_per_step=10, page_size=10)
        assert result["impressions"] > 0 and result["policy"] == "pipeline"
    finally:
        policy.close()


def test_pipeline_is_a_registered_sim_policy():
    assert make_policy("pipeline").name == "pipeline"
    assert make_policy("pipeline-popular").name == "pipeline-popular"
    assert make_policy("pipeline-nocoldstart").name == "pipeline-nocoldstart"


def test_pipeline_cold_start_exposes_new_notes_and_the_variant_does_not(tmp_path):
    from notefeed.serve.config import ServeConfig

    exposed = {}
    for name, cfg in (("pipeline", None), ("pipeline-nocoldstart", ServeConfig().with_overrides(
            coldstart={"enabled": False}))):
        community = generate("tiny", seed=0)
        env = SimEnvironment(community, seed=1, dataset=community.history())
        policy = EnginePolicy(workspace=tmp_path / name, config=cfg, name=name)
        try:
            res = run_closed_loop(env, policy, steps=3, requests_per_step=20, page_size=10, new_notes_per_step=3)
            exposed[name] = res["new_notes_exposed_share"]
            assert res["policy"] == name
            if name == "pipeline":
                assert res["pool_notes"] == 9
        finally:
            policy.close()
    assert exposed["pipeline"] > 0.5 and exposed["pipeline"] > exposed["pipeline-nocoldstart"]


def test_offline_engines_keep_to_their_own_log_with_a_redis_serving_config(tmp_path):
    """The simulator, tuning, evaluation and training build engines on private workspaces; the
    serving config's Redis (here one that is not there) is never opened by them."""
    from notefeed.online.bus import SqliteEventBus
    from notefeed.online.state import MemoryOnlineState
    from notefeed.serve.config import ServeConfig

    cfg = ServeConfig().with_overrides(online={"backend": "redis", "redis_url": "redis://127.0.0.1:1/0",
                                               "mirror_to_workspace": True})
    off = cfg.offline()
    assert (off.online.backend, off.online.mirror_to_workspace, off.online.follow_promoted_s) == ("sqlite", False, 0)
    assert off.model_dump(exclude={"online"}) == cfg.model_dump(exclude={"online"})
    community = generate("tiny", seed=0)
    env = SimEnvironment(community, seed=1, dataset=community.history())
    policy = EnginePolicy(workspace=tmp_path / "ws", config=cfg.with_overrides(
        recall={"channels": [{"name": "non-personalized/popular", "quota": 50}]}), train=False)
    try:
        assert len(policy.recommend(env, 0, 5)) == 5
        assert isinstance(policy.engine.bus, SqliteEventBus) and isinstance(policy.engine.state, MemoryOnlineState)
    finally:
        policy.close()


def test_the_closed_loop_serves_from_the_configured_data_window(tmp_path):
    """``data.window_days`` in the config: the simulated server starts from the window of the
    logged history, as ``serve`` reads it from a store."""
    from notefeed.serve.config import ServeConfig

    community = generate("tiny", seed=0)
    ds = community.history()
    env = SimEnvironment(community, seed=1, dataset=ds)
    cfg = ServeConfig().with_overrides(data={"window_days": 2, "keep_per_user": 5})
    policy = EnginePolicy(workspace=tmp_path / "ws", config=cfg)
    try:
        assert len(policy.recommend(env, 0, 10)) > 0
        want = ds.windowed(2, 5)
        assert len(policy.engine.ds.events) == len(want.events) < len(ds.events)
    finally:
        policy.close()
