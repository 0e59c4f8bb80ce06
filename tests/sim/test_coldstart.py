"""The cold-start pool in the simulator (notefeed/sim/coldstart.py): the +coldstart policies."""

from __future__ import annotations

import numpy as np
import pytest

from notefeed.online.coldstart import ColdStartPool
from notefeed.sim import SimEnvironment, generate, make_policy, run_closed_loop
from notefeed.sim.coldstart import ColdStartPolicy
from notefeed.sim.policies import POLICIES


def test_policies_registered_and_slots_checked() -> None:
    assert {f"{b}+coldstart{v}" for b in ("popular", "random") for v in ("", "-uniform", "-content")} \
        <= set(POLICIES.names())
    with pytest.raises(ValueError, match="slots"):
        ColdStartPolicy(object(), ColdStartPool(), slots=-1)


def test_policy_in_closed_loop():
    comm = generate("tiny", seed=1)
    hist = comm.history()
    out = {}
    for name in ("popular", "popular+coldstart"):
        env = SimEnvironment(comm, seed=1, dataset=hist)
        out[name] = run_closed_loop(env, make_policy(name, seed=1), steps=4, requests_per_step=40,
                                    new_notes_per_step=3, impression_target=20)
    cs = out["popular+coldstart"]
    assert cs["policy"] == "popular+coldstart"
    assert cs["new_notes_exposed_share"] > out["popular"]["new_notes_exposed_share"]
    assert cs["new_note_share"] > 0
    pol = make_policy("popular+coldstart", seed=0, slots=3)
    env = SimEnvironment(comm, seed=0, dataset=hist)
    env.publish(5)
    page = pol.recommend(env, 0, 10)
    assert len(page) == len(set(page.tolist())) == 10
    assert np.isin(page, env.published_items).sum() <= 3 + np.isin(pol.base.recommend(env, 0, 10),
                                                                    env.published_items).sum()
