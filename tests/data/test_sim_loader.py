import numpy as np

import notefeed.sim  # noqa: F401  (the simulator registers its sim-* datasets)
from notefeed.data.loaders import DATASET_NAMES, LOADERS, load_dataset


def test_sim_presets_are_named_deterministic_datasets():
    a = load_dataset("sim-tiny", seed=3)
    b = load_dataset("sim-tiny", seed=3)
    assert a.name == "sim-tiny"
    assert len(a.events) > 0 and a.n_items > 0
    assert np.array_equal(a.events["item"].to_numpy(), b.events["item"].to_numpy())
    # creators carry real follower counts, so the small-creator flag is meaningful
    assert 0.0 < a.item_is_small_creator.mean() < 1.0


def test_every_public_name_has_a_loader():
    for name in DATASET_NAMES:
        assert name in LOADERS
