"""Every channel with ``to_state``: fit, save, load, and recall gives the same items and scores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from notefeed.models.artifacts import ModelError, load_component, save_component
from notefeed.recall import CHANNELS
from notefeed.recall.base import UserContext

try:  # registers sequence/sasrec where the package does not import it (yet)
    import notefeed.recall.sequential  # noqa: F401
except ImportError:  # pragma: no cover
    pass

SMALL = {"embedding/two-tower": {"dim": 16, "epochs": 1, "buckets": 1024},
         "sequence/sasrec": {"dim": 16, "epochs": 1, "progress": False}}
NAMES = [n for n in CHANNELS.names() if not n.startswith("test/")
         and callable(getattr(CHANNELS.get(n), "to_state", None)) and callable(getattr(CHANNELS.get(n), "from_state", None))]
MUST = {"item-to-item/swing", "item-to-item/itemcf", "user-to-user/default", "tag/interest", "social/follow",
        "non-personalized/popular", "fresh/pool", "embedding/two-tower"}


def _contexts() -> list[UserContext]:
    return [
        UserContext("u0", 0, history=np.array([0, 4, 8, 12, 16]), seen=np.array([20, 24]), ts=3_000_000),
        UserContext("u5", 5, history=np.array([1, 5, 9]), ts=3_000_000),
        UserContext("u7", 7, ts=3_000_000),  # stored history only
        UserContext("stranger", None, history=np.array([2, 6]), ts=3_000_000),
        UserContext("nobody", None),
    ]


def test_the_common_channels_are_persistable():
    assert MUST <= set(NAMES), sorted(MUST - set(NAMES))


@pytest.mark.parametrize("name", NAMES)
def test_save_load_recalls_the_same(tiny, tmp_path, name):
    ch = CHANNELS.create(name, **SMALL.get(name, {})).fit(tiny)
    d = save_component(ch, tmp_path / "c")
    meta = json.loads((d / "component.json").read_text())
    assert meta["name"] == name and ":" in meta["class"]
    back = load_component(d)
    assert type(back) is type(ch) and back.name == name
    for ctx in _contexts():
        a, b = ch.recall(ctx, 25), back.recall(ctx, 25)
        np.testing.assert_array_equal(a.items, b.items, err_msg=f"{name} {ctx.user_id}")
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6, atol=1e-7, err_msg=f"{name} {ctx.user_id}")


def test_loading_checks_the_files(tiny, tmp_path):
    ch = CHANNELS.create("non-personalized/popular").fit(tiny)
    d = save_component(ch, tmp_path / "c")
    meta = json.loads((d / "component.json").read_text())
    (d / "component.json").write_text(json.dumps({**meta, "class": "os:system"}))
    with pytest.raises(ModelError, match="component.json.*os:system"):
        load_component(d)
    (d / "component.json").write_text(json.dumps({**meta, "name": "no/such"}))
    with pytest.raises(ModelError, match="unknown component 'no/such'"):
        load_component(d)
    (d / "component.json").write_text("{oops")
    with pytest.raises(ModelError, match="component.json: not valid JSON"):
        load_component(d)
    (d / "component.json").write_text(json.dumps(meta))
    (d / "arrays.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ModelError, match="arrays.safetensors: corrupt"):
        load_component(d)
    (d / "arrays.safetensors").unlink()
    with pytest.raises(ModelError, match="arrays.safetensors: missing"):
        load_component(d)
    with pytest.raises(ModelError, match="component.json: missing"):
        load_component(tmp_path / "nothing")


def test_unfitted_or_stateless_components_are_refused(tmp_path):
    class NoState:
        name = "x/y"

    with pytest.raises(ModelError, match="no to_state"):
        save_component(NoState(), tmp_path / "a")
    with pytest.raises(RuntimeError, match="before fit"):
        save_component(CHANNELS.create("item-to-item/swing"), tmp_path / "b")
