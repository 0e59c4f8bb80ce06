"""The registry's deferred modules, and the recall package's use of them."""

import ast
import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import notefeed
from notefeed.registry import Registry

ROOT = Path(notefeed.__file__).parent


def _write_module(tmp_path: Path, name: str, body: str) -> None:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))


def test_deferred_modules_register_at_the_first_lookup(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    _write_module(tmp_path, "nf_reg_home", """
        from notefeed.registry import Registry
        REG = Registry("widget")
    """)
    _write_module(tmp_path, "nf_reg_a", """
        from nf_reg_home import REG
        REG.register("a/one")(lambda: 1)
        assert "a/one" in REG  # a lookup while the module imports finds what is there
    """)
    _write_module(tmp_path, "nf_reg_b", """
        from nf_reg_home import REG
        REG.register("b/two")(lambda: 2)
    """)
    try:
        from nf_reg_home import REG

        REG.defer("nf_reg_a", "nf_reg_b", "nf_reg_a")
        assert "nf_reg_a" not in sys.modules and REG._deferred == ["nf_reg_a", "nf_reg_b"]
        assert REG.names() == ["a/one", "b/two"]
        assert REG.create("b/two") == 2 and REG._deferred == []
    finally:
        for m in ("nf_reg_home", "nf_reg_a", "nf_reg_b"):
            sys.modules.pop(m, None)


def test_a_deferred_module_that_fails_raises_at_every_lookup(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    _write_module(tmp_path, "nf_reg_broken", "raise RuntimeError('broken component module')\n")
    reg: Registry = Registry("widget")
    reg.defer("nf_reg_broken")
    for _ in range(2):
        with pytest.raises(RuntimeError, match="broken component module"):
            reg.get("x/y")
        with pytest.raises(RuntimeError, match="broken component module"):
            reg.names()


def _registrations(attr: str) -> set[tuple[str, str | None]]:
    """(module, name) of every ``<attr>.register("name")`` call under notefeed/ (name None where
    it is not a constant)."""
    found = set()
    for path in ROOT.rglob("*.py"):
        module = ".".join(("notefeed", *path.relative_to(ROOT).with_suffix("").parts))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "register" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == attr:
                found.add((module, getattr(node.args[0], "value", None)))
    return found


def test_every_channel_module_is_named_to_the_registry():
    from notefeed.recall import CHANNEL_MODULES

    modules = {m for m, _ in _registrations("CHANNELS")}
    assert "notefeed.recall.sequential" in modules and "notefeed.llm.notellm" in modules
    missing = {m for m in modules if not any(m == d or m.startswith(d + ".") for d in CHANNEL_MODULES)}
    assert not missing, f"channel modules not in notefeed.recall.CHANNEL_MODULES: {sorted(missing)}"
    for d in CHANNEL_MODULES:  # a package named there imports its channel modules
        importlib.import_module(d)
    assert modules <= set(sys.modules)


def test_kernels_import_without_torch_and_the_package_still_lists_every_channel():
    code = textwrap.dedent("""
        import sys
        import notefeed.batch.jobs, notefeed.recall.kernels
        print(int("torch" in sys.modules))
        from notefeed.recall import CHANNELS, SASRecChannel
        print(int("torch" in sys.modules), len(CHANNELS.names()), CHANNELS.get("sequence/sasrec") is SASRecChannel)
        from notefeed.eval.stages import EVAL_STAGES
        print(int("recall" in EVAL_STAGES))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "0"
    torch_in, n, same = out[1].split()
    assert torch_in == "1" and same == "True" and int(n) == len(_registrations("CHANNELS"))
    assert out[2] == "1"



LAZY_PACKAGES = ("notefeed", "notefeed.content", "notefeed.eval", "notefeed.llm", "notefeed.rank", "notefeed.recall")


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_every_public_name_of_a_lazy_package_resolves(package):
    mod = importlib.import_module(package)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name
        assert name in dir(mod)
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'no_such_name'"):
        mod.no_such_name  # noqa: B018


def test_the_cli_and_the_light_packages_import_without_torch_and_every_registry_still_lists_all():
    code = textwrap.dedent("""
        import sys
        import notefeed.cli, notefeed.content, notefeed.eval, notefeed.llm, notefeed.rank, notefeed.search
        print(int("torch" in sys.modules))
        from notefeed.eval.stages import EVAL_STAGES
        from notefeed.llm.base import BACKENDS
        from notefeed.rank.base import SCORERS
        from notefeed.search.base import REWRITERS
        print(" ".join(EVAL_STAGES.names()))
        for reg in (BACKENDS, SCORERS, REWRITERS):
            print(" ".join(reg._deferred), "|", " ".join(reg.names()))
        print(int("torch" in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "0"
    assert {"content", "llm", "model", "rank", "search"} <= set(out[1].split())
    for line, registry in zip(out[2:5], ("BACKENDS", "SCORERS", "REWRITERS"), strict=True):
        deferred, names = (part.split() for part in line.split("|"))
        found = _registrations(registry)
        assert {m for m, _ in found} <= set(deferred), registry  # every registering module is named
        assert {n for _, n in found if n} <= set(names), registry
    assert {"rank/cgc", "rank/ltr", "rank/coarse"} <= set(out[3].split("|")[1].split())
    assert out[5] == "1"  # the lookups imported the modules that need it
