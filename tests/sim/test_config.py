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
