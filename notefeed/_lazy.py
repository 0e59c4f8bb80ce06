"""Names a package exports but imports only at their first use (PEP 562 module ``__getattr__``).

A package ``__init__`` that imported every public name would import its heaviest dependency
(torch) for code that needs none of it: ``notefeed --help``, a Ray worker's kernel, the search
index. With :func:`lazy_exports` ``from notefeed.content import TextEncoder`` works as before
and imports only what that name needs.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` that import ``names[name]`` (a module)
    at the first access to ``name`` and keep the value as a module attribute."""

    def __getattr__(name: str) -> object:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *names})

    return __getattr__, __dir__
