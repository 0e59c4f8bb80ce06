import numpy as np
import pytest

from notefeed.sim.community import generate
from notefeed.sim.config import PRESETS, SimConfig, SimConfigError, preset


@pytest.mark.parametrize(
    "field,value",
    [("n_users", -1), ("n_notes", 0), ("n_topics", 0), ("n_creators", -5), ("dim", 0), ("history_days", -2),
     ("chinese_share", 1.5), ("follower_alpha", 0.0), ("seed", -1)],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(SimConfigError, match=field):
        SimConfig().with_(**{field: value}).validate()


def test_generate_rejects_bad_overrides():
    with pytest.raises(SimConfigError, match="n_topics"):
        generate("tiny", n_topics=0)
    with pytest.raises(SimConfigError, match="no field"):
        generate("tiny", n_topic=3)
    with pytest.raises(SimConfigError, match="unknown sim preset"):
        preset("huge")


def test_more_creators_than_notes_is_rejected():
    with pytest.raises(SimConfigError, match="n_creators"):
        SimConfig(n_creators=10, n_notes=5).validate()


def test_presets_are_valid_and_sized():
    for cfg in PRESETS.values():
        cfg.validate()
    assert PRESETS["1m"].n_notes == 1_000_000 and PRESETS["1m"].n_users == 100_000
    assert PRESETS["100k"].n_notes == 100_000 and PRESETS["100k"].n_users == 20_000
    assert PRESETS["tiny"].n_users == 300 and PRESETS["tiny"].n_creators == 50


def test_interest_cohesion_changes_only_the_interests():
    """``interest_cohesion``: the same world draw for draw except the interests, which now go
    together within topic groups; 0 keeps the independent draw."""
    from notefeed.sim.world import cohesion_draws, generate_world

    a, b = generate_world(preset("tiny")), generate_world(preset("tiny-cohesive"))
    assert np.array_equal(a.note_creator, b.note_creator) and np.array_equal(a.note_topic, b.note_topic)
    assert (a.user_interest > 0).sum() == (b.user_interest > 0).sum()  # as many interests per user
    assert not np.array_equal(a.user_interest, b.user_interest)

    def same_group_share(w, groups):
        i = w.user_interest > 0
        pairs = [(x, y) for row in i for x in np.flatnonzero(row) for y in np.flatnonzero(row) if x < y]
        return np.mean([groups[x] == groups[y] for x, y in pairs])

    groups, _ = cohesion_draws(preset("tiny-cohesive"), 300)
    assert np.bincount(groups).tolist() == [4, 4]
    assert same_group_share(b, groups) > same_group_share(a, groups) + 0.2
    with pytest.raises(SimConfigError, match="topic_groups"):
        preset("tiny", topic_groups=9)
    with pytest.raises(SimConfigError, match="interest_cohesion"):
        preset("tiny", interest_cohesion=1.5)
