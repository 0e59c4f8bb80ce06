"""An explicit registry: components register themselves with a decorator, by name.

No import scanning: a module's components exist in the registry once the module is
imported, and each stage's ``__init__`` imports its own modules, or names them with
:meth:`Registry.defer` so that they are imported at the registry's first lookup (importing
the package then costs nothing for code that only needs a kernel from it).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["Registry", "error_text", "nested_params"]

T = TypeVar("T")


def error_text(e: BaseException) -> str:
    """The message of ``e`` for a one-line error: a ``KeyError`` (a registry's unknown name)
    gives its text, not its quoted repr."""
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


def nested_params(factory: Any, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` for ``factory(**params)`` where ``factory`` is a dataclass: a mapping given for
    a field whose default is itself a dataclass (``rules: {author_max: 1}``) becomes that
    dataclass. A bad mapping raises ``ValueError("<field>: <why>")``."""
    kwargs = dict(params)
    if not dataclasses.is_dataclass(factory):
        return kwargs
    for f in dataclasses.fields(factory):
        v = kwargs.get(f.name)
        if not isinstance(v, dict):
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default) and not isinstance(default, type):
            try:
                kwargs[f.name] = type(default)(**v)
            except (TypeError, ValueError) as e:
                raise ValueError(f"{f.name}: {e}") from None
    return kwargs


class Registry(Generic[T]):
    """Name -> factory. ``@REG.register("item-to-item/swing")`` on a class or function."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}
        self._deferred: list[str] = []

    def defer(self, *modules: str) -> None:
        """Import ``modules`` (which register components here) at the first ``get``, ``create``,
        ``names`` or ``in``, not now. A module that fails to import raises there, and again at
        the next lookup: nothing is silently left out."""
        self._deferred.extend(m for m in modules if m not in self._deferred)

    def _load(self) -> None:
        while self._deferred:
            module = self._deferred[0]
            importlib.import_module(module)  # a lookup while it imports finds it in sys.modules
            if self._deferred and self._deferred[0] == module:
                self._deferred.pop(0)

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self._items[name] = factory
            return factory

        return deco

    def get(self, name: str) -> Callable[..., T]:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise KeyError(f"unknown {self.kind} '{name}'; known: {known}") from None

    def create(self, name: str, **params: object) -> T:
        return self.get(name)(**params)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items
