"""The PID fairness controller across requests."""

from __future__ import annotations

import numpy as np
import pytest

from notefeed.rerank import FairnessConfig, FairnessController, RerankInput, SSDReRanker, small_creator_share


def test_boost_rises_below_target_and_falls_above() -> None:
    c = FairnessController(target=0.5, kp=0.5, ki=0.2)
    b = [c.update(n_small=2, n_shown=10) for _ in range(5)]
    assert all(x > 0 for x in b) and b[-1] > b[0]  # under-exposed: boost keeps growing
    top = c.boost
    for _ in range(30):
        c.update(n_small=9, n_shown=10)
    assert c.boost < top  # over-exposed: boost comes down
    assert c.boost >= c.min_boost


def test_closed_loop_reaches_target_share() -> None:
    rng = np.random.default_rng(0)
    c = FairnessController(target=0.5, kp=0.5, ki=0.1, max_boost=3.0)
    shares = []
    for _ in range(60):
        n = 300
        small = rng.random(n) < 0.4
        inp = RerankInput(rng.normal(size=n) * 0.3 - 0.3 * small, rng.normal(size=(n, 8)), small_creator=small)
        rr = SSDReRanker(fairness=FairnessConfig(target=0.5, mode="soft", boost=c.boost))
        got = rr.select(inp, 40)
        shares.append(small_creator_share(small, got))
        c.update(int(small[got].sum()), len(got))
    assert np.mean(shares[:5]) < 0.45  # starts well below target ...
    assert abs(np.mean(shares[-20:]) - 0.5) < 0.06  # ... and the loop brings it to target


def test_state_roundtrips_through_json() -> None:
    c = FairnessController(target=0.6)
    for s in (1, 3, 7):
        c.update(s, 10)
    d = FairnessController.from_json(c.to_json())
    assert d == c
    assert d.update(5, 10) == c.update(5, 10)


@pytest.mark.parametrize(
    "text, field",
    [("not json", "not JSON"), ("[1]", "object"), ('{"bogus": 1}', "bogus"), ('{"target": 2}', "target")],
)
def test_bad_state_is_a_clear_error(text: str, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        FairnessController.from_json(text)


def test_bad_update_is_rejected() -> None:
    with pytest.raises(ValueError, match="n_small"):
        FairnessController().update(5, 3)
