"""ModelStore: save/load round trip, promote and rollback, clear errors on damaged files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from notefeed.models import ModelError, ModelStore, data_snapshot
from notefeed.recall.base import UserContext


def test_round_trip(tmp_path, components, tiny_ds):
    store = ModelStore(tmp_path)
    assert store.list() == [] and store.promoted() is None
    v = store.save(components, {"config": {"recall": {"channels": ["x"]}}, "data": data_snapshot(tiny_ds),
                                "metrics": {"recall.channels.1": {"recall@50": np.float32(0.25)}}})
    assert (tmp_path / "models" / v / "manifest.json").is_file()
    assert (tmp_path / "models" / v / "recall.channels.1" / "arrays.safetensors").is_file()
    m = store.manifest(v)
    assert m["version"] == v and len(m["config_hash"]) == 16 and m["code"]["notefeed"]
    assert m["data"]["n_events"] == len(tiny_ds.events) and m["data"]["ts_min"] <= m["data"]["ts_max"]
    assert m["metrics"]["recall.channels.1"]["recall@50"] == pytest.approx(0.25)
    assert m["components"]["recall.channels.2"]["name"] == "tag/interest"
    loaded = store.load(v)
    assert set(loaded) == set(components)
    ctx = UserContext("u1", 1, history=np.array([1, 5, 9]))
    for k, comp in components.items():
        a, b = comp.recall(ctx, 20), loaded[k].recall(ctx, 20)
        np.testing.assert_array_equal(a.items, b.items)
        np.testing.assert_array_equal(a.scores, b.scores)
    [info] = store.list()
    assert info.version == v and not info.promoted and info.n_events == len(tiny_ds.events)


def test_versions_sort_by_creation(tmp_path, components):
    store = ModelStore(tmp_path)
    vs = [store.save({"recall.channels.1": components["recall.channels.1"]}) for _ in range(3)]
    assert vs == sorted(vs) == store.versions() and len(set(vs)) == 3


def test_promote_and_rollback(tmp_path, components):
    store = ModelStore(tmp_path)
    comp = {"recall.channels.1": components["recall.channels.1"]}
    a, b, c = (store.save(comp) for _ in range(3))
    with pytest.raises(ModelError, match="nothing to roll back"):
        store.rollback()
    with pytest.raises(ModelError, match="no promoted version"):
        store.load()
    store.promote(a)
    store.promote(b)
    assert store.promoted() == b and [i.promoted for i in store.list()] == [False, True, False]
    assert store.rollback() == a and store.promoted() == a
    with pytest.raises(ModelError, match="only one version"):
        store.rollback()
    store.promote(c)
    assert store.rollback() == a
    doc = json.loads((tmp_path / "models" / "promoted.json").read_text())
    assert doc["version"] == a and [h["action"] for h in doc["history"]] == [
        "promote", "promote", "rollback", "promote", "rollback"]
    assert set(store.load()) == {"recall.channels.1"}
    assert not list((tmp_path / "models").glob(".*.tmp"))


def test_bad_names_and_damaged_files(tmp_path, components):
    store = ModelStore(tmp_path)
    v = store.save({"recall.channels.1": components["recall.channels.1"]})
    for bad in ("../etc", "nope", ""):
        with pytest.raises(ModelError, match="not a version name"):
            store.promote(bad)
    with pytest.raises(ModelError, match="not found"):
        store.promote("20000101T000000000Z-abcdef")
    mp = tmp_path / "models" / v / "manifest.json"
    good = mp.read_text()
    mp.write_text("{truncated")
    with pytest.raises(ModelError, match=f"{v}/manifest.json: not valid JSON"):
        store.list()
    with pytest.raises(ModelError, match="manifest.json: not valid JSON"):
        store.promote(v)
    mp.unlink()
    with pytest.raises(ModelError, match="manifest.json: missing"):
        store.load(v)
    mp.write_text(good)
    (tmp_path / "models" / v / "recall.channels.1" / "component.json").unlink()
    with pytest.raises(ModelError, match="recall.channels.1/component.json: missing"):
        store.promote(v)
    (tmp_path / "models" / "promoted.json").write_text("[]")
    with pytest.raises(ModelError, match="promoted.json"):
        store.promoted()
    with pytest.raises(ModelError, match="component key"):
        store.save({"../x": components["recall.channels.1"]})


def test_a_version_keeps_the_user_ids_it_was_trained_on(tmp_path, components):
    store = ModelStore(tmp_path)
    ids = ["u1", "用户二", "a\0b", "", "x" * 300, "\udc80"]  # any text, even what ids refuse now
    v = store.save({"recall.channels.1": components["recall.channels.1"]}, user_ids=ids)
    assert store.user_ids(v) == ids
    assert store.user_ids(store.save({"recall.channels.1": components["recall.channels.1"]})) is None
    assert store.user_ids(store.save({}, user_ids=[])) == []
    (tmp_path / "models" / v / "users.json").write_bytes(b"\x10\x00")
    with pytest.raises(ModelError, match=f"{v}/users.json: unreadable"):
        store.user_ids(v)


def test_ids_fingerprint_hashes_each_id_and_a_nul_in_order():
    """The fingerprint is hashed in one piece; it must equal the id-by-id definition (versions
    already stored carry it)."""
    import hashlib

    import pandas as pd

    from notefeed.models.store import ids_fingerprint

    def by_id(ids, n):
        h = hashlib.sha256()
        for x in list(ids.iloc[:n] if hasattr(ids, "iloc") else ids[:n]):
            h.update(str(x).encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        return h.hexdigest()[:16]

    cases = [pd.Series(["n1", "笔记", "", "a b"]), pd.Series(["a", "x\ud800y"], dtype=object),
             pd.Series(["a", "b"], dtype="string[pyarrow]"), pd.Series(["u1", "u2", "u1"], dtype="category"),
             np.array(["q", "r"]), ["a", "\ud800"], pd.Series([1, 2, 3]), pd.Series([1.5, np.nan]),
             pd.Series([], dtype=object)]
    for ids in cases:
        for n in range(len(ids) + 1):
            assert ids_fingerprint(ids, n) == by_id(ids, n), (ids, n)
    assert ids_fingerprint(["a", "b"], 2) != ids_fingerprint(["ab"], 1)
