import numpy as np
import pandas as pd
import pytest

from notefeed.data.dataset import DataError, Dataset


def _events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u3", "u2"],
            "note_id": ["a", "b", "a", "c", "a"],
            "ts": [3, 1, 2, 5, 4],
            "type": ["click", "like", "impression", "collect", "click"],
        }
    )


def test_build_assigns_indices_and_sorts_by_time():
    notes = pd.DataFrame({"note_id": ["a", "b"], "author_id": ["c1", "c2"], "tags": [["x"], []]})
    creators = pd.DataFrame({"creator_id": ["c1"], "followers": [5000]})
    ds = Dataset.build("t", _events(), notes=notes, creators=creators)
    assert ds.n_items == 3 and ds.n_users == 3
    assert list(ds.events["ts"]) == [1, 2, 3, 4, 5]
    assert ds.notes.loc[2, "author_id"] == "unknown"
    # c1 has 5000 followers, c2 and unknown default to 0 -> small
    assert ds.item_is_small_creator.tolist() == [False, True, True]
    m = ds.interactions()
    assert m.shape == (3, 3)
    assert m[ds.user_index["u2"], ds.item_index["a"]] == 1.0  # click kept, impression excluded
    assert m.nnz == 4


def test_weighted_interactions_sum_by_type():
    ds = Dataset.build("t", _events())
    m = ds.interactions(types=None, weights={"click": 1.0, "impression": 0.1}, binary=False)
    assert m[ds.user_index["u2"], ds.item_index["a"]] == pytest.approx(1.1)


@pytest.mark.parametrize(
    "mutate,field",
    [
        (lambda e: e.assign(type=["click", "bogus", "like", "like", "like"]), "type"),
        (lambda e: e.assign(ts=["1", "x", "2", "3", "4"]), "ts"),
        (lambda e: e.drop(columns=["note_id"]), "note_id"),
    ],
)
def test_bad_events_name_the_field(mutate, field):
    with pytest.raises(DataError, match=field):
        Dataset.build("t", mutate(_events()))


def test_negative_followers_rejected():
    with pytest.raises(DataError, match="followers"):
        Dataset.build("t", _events(), creators=pd.DataFrame({"creator_id": ["c"], "followers": [-1]}))


def test_stats_and_subsample():
    ds = Dataset.build("t", _events())
    s = ds.stats()
    assert s["events"] == 5 and s["user_note_pairs"] == 4
    sub = ds.subsample_users(1, seed=0)
    assert sub.events["user"].nunique() == 1
    assert np.array_equal(sub.notes["note_id"], ds.notes["note_id"])


def test_type_mask_equals_a_string_comparison_for_every_column_kind():
    from notefeed.data.dataset import type_mask

    values = ["click", "like", "impression", None, "click", "collect"]
    for col in (pd.Series(values, dtype=object), pd.Series(values, dtype="string"),
                pd.Series(values, dtype="category"),
                pd.Series(pd.Categorical(values, categories=["impression", "click", "like", "collect", "hide"]))):
        ev = pd.DataFrame({"type": col})
        as_str = np.array([str(v) for v in values], dtype=object)
        assert type_mask(ev, "click").tolist() == (as_str == "click").tolist()
        assert type_mask(ev, "hide").tolist() == [False] * len(values)
        assert type_mask(ev, "like", "collect").tolist() == np.isin(as_str, ["like", "collect"]).tolist()
    assert type_mask(pd.DataFrame({"type": pd.Series([], dtype="category")}), "click").shape == (0,)
