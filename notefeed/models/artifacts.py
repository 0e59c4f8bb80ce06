"""One way to persist a fitted component: ``component.json`` + ``arrays.safetensors``.

A persistable component class implements

- ``to_state() -> (params, arrays)``: JSON-able ``params`` and a ``{name: np.ndarray}`` of
  numeric arrays (sparse tables as CSR triples, torch modules as their ``state_dict``);
- ``@classmethod from_state(params, arrays)``: the fitted component back.

Loading never imports anything named on disk: the class is looked up by the component's
registry ``name`` in the stage registries (``CHANNELS``, ``SCORERS``, ``RERANKERS``). The
class's ``module:qualname`` is written too, but only checked against what the registry gives
(a renamed or moved class is refused rather than loaded into the wrong code). Never pickle.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

__all__ = ["ModelError", "FORMAT", "save_component", "load_component", "component_factory", "has_state"]

FORMAT = 1
_META = "component.json"
_ARRAYS = "arrays.safetensors"
_STAGES = (
    ("notefeed.recall", "notefeed.recall.base", "CHANNELS"),
    ("notefeed.rank", "notefeed.rank.base", "SCORERS"),
    ("notefeed.rerank", "notefeed.rerank.base", "RERANKERS"),
)


class ModelError(ValueError):
    """A model file or directory that is missing, corrupt or does not match the code."""


def has_state(obj: Any) -> bool:
    """Whether ``obj`` can be persisted (``to_state`` and a class-level ``from_state``)."""
    return callable(getattr(obj, "to_state", None)) and callable(getattr(type(obj), "from_state", None))


def _class_path(cls: Any) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def component_factory(name: str) -> Any:
    """The registered factory called ``name`` (recall channels, scorers, re-rankers)."""
    found = []
    for pkg, base, attr in _STAGES:
        try:
            importlib.import_module(pkg)  # registers the stage's components
        except Exception:  # a broken stage must not hide the other stages' components
            pass
        reg = getattr(importlib.import_module(base), attr)
        if name in reg:
            return reg.get(name)
        found.extend(reg.names())
    raise ModelError(f"unknown component {name!r}: not in any stage registry; known: {sorted(found)}")


def save_component(obj: Any, directory: str | Path) -> Path:
    """Write ``obj`` to ``directory`` (created; files replaced). Raises :class:`ModelError`
    when ``obj`` cannot be persisted or its state is not JSON / numeric arrays."""
    d = Path(directory)
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        raise ModelError(f"{type(obj).__name__}: a persisted component needs a registry 'name'")
    if not has_state(obj):
        raise ModelError(f"{name} ({type(obj).__name__}): no to_state()/from_state(); cannot be saved")
    params, arrays = obj.to_state()
    out: dict[str, np.ndarray] = {}
    for k, v in arrays.items():
        a = np.asarray(v)
        if a.dtype == object or a.dtype.kind in "USV":
            raise ModelError(f"{name}: array {k!r} has dtype {a.dtype}; only numeric arrays are saved")
        out[k] = np.ascontiguousarray(a)
    meta = {"format": FORMAT, "name": name, "class": _class_path(type(obj)), "params": params,
            "arrays": sorted(out)}
    try:
        text = json.dumps(meta, indent=1, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise ModelError(f"{name}: params are not JSON ({e})") from None
    d.mkdir(parents=True, exist_ok=True)
    save_file(out, str(d / _ARRAYS))
    tmp = d / f".{_META}.tmp"
    tmp.write_text(text)
    os.replace(tmp, d / _META)  # the meta last: a half-written component has no component.json
    return d


def _read_json(p: Path) -> Any:
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise ModelError(f"{p}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{p}: not valid JSON ({e})") from None
    except OSError as e:
        raise ModelError(f"{p}: cannot read ({e})") from None


def load_component(directory: str | Path) -> Any:
    """The component saved in ``directory``; :class:`ModelError` naming the file otherwise."""
    d = Path(directory)
    mp = d / _META
    meta = _read_json(mp)
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not isinstance(meta.get("params"), dict):
        raise ModelError(f"{mp}: needs 'name' (string) and 'params' (object)")
    if meta.get("format") != FORMAT:
        raise ModelError(f"{mp}: format {meta.get('format')!r} is not supported (expected {FORMAT})")
    name = meta["name"]
    try:
        factory = component_factory(name)
    except ModelError as e:
        raise ModelError(f"{mp}: {e}") from None
    if meta.get("class") != _class_path(factory):
        raise ModelError(f"{mp}: {name!r} was saved from {meta.get('class')!r} but is now "
                         f"{_class_path(factory)!r}; retrain it")
    from_state = getattr(factory, "from_state", None)
    if not callable(from_state):
        raise ModelError(f"{mp}: {name!r} has no from_state(); cannot be loaded")
    ap = d / _ARRAYS
    try:
        arrays = load_file(str(ap))
    except FileNotFoundError:
        raise ModelError(f"{ap}: missing") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{ap}: corrupt ({e})") from None
    missing = set(meta.get("arrays", [])) - set(arrays)
    if missing:
        raise ModelError(f"{ap}: missing arrays {sorted(missing)}")
    try:
        return from_state(meta["params"], arrays)
    except ModelError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
        raise ModelError(f"{d}: cannot rebuild {name!r} from its state ({type(e).__name__}: {e})") from None
