"""Package layout (STYLE.md point 12): the stage packages never import ``serve/`` or ``sim/``,
not even inside a function; the simulator and the serving layer depend on the stages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import notefeed

ROOT = Path(notefeed.__file__).parent
STAGES = ("recall", "rank", "rerank", "content", "data", "search", "ads", "online", "llm")
FORBIDDEN = ("notefeed.serve", "notefeed.sim")


def _package(path: Path) -> str:
    """The package a module file belongs to (what its relative imports start from)."""
    mod = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
    return mod.removesuffix(".__init__") if path.name == "__init__.py" else mod.rsplit(".", 1)[0]


def _imports(src: str, pkg: str) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``src`` (a module of package ``pkg``): top
    level, in functions, relative ones resolved, and string arguments of
    ``importlib.import_module`` / ``__import__``."""
    out = []
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg
                base = f"{parent}.{base}" if base else parent
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                out.append((node.lineno, node.args[0].value))
    return out


def _forbidden(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN)


@pytest.mark.parametrize("stage", STAGES)
def test_stage_packages_import_neither_serve_nor_sim(stage: str) -> None:
    bad = [f"{p.relative_to(ROOT.parent)}:{line}: {mod}"
           for p in sorted((ROOT / stage).rglob("*.py"))
           for line, mod in _imports(p.read_text(encoding="utf-8"), _package(p)) if _forbidden(mod)]
    assert not bad, "stage package imports serve/ or sim/:\n" + "\n".join(bad)


def test_the_check_sees_function_level_and_relative_imports() -> None:
    src = ("def f():\n    from notefeed.serve.config import ServeConfig\n"
           "from ..sim import community\nimport importlib\nimportlib.import_module('notefeed.sim.env')\n")
    assert _package(ROOT / "recall" / "merge.py") == "notefeed.recall"
    assert _package(ROOT / "recall" / "__init__.py") == "notefeed.recall"
    mods = [m for _, m in _imports(src, "notefeed.recall")]
    assert {m for m in mods if _forbidden(m)} == {"notefeed.serve.config", "notefeed.serve.config.ServeConfig",
                                                  "notefeed.sim", "notefeed.sim.community", "notefeed.sim.env"}
