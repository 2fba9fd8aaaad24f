"""The core's floors show: no import circle among robustreg's modules, no plugin imported by the core, and
``import robustreg`` loads no CLI layer.

The graph is read with ``ast`` from every module of ``robustreg/``: module-level imports, imports inside
functions (an import hidden in a function to dodge a circle is still an arrow) and imports under
``if TYPE_CHECKING:`` (an annotation is a dependency too).  ``from . import x`` is an arrow to the
submodule ``x``; ``from .pkg import name`` to ``pkg`` (its ``__init__`` runs).  Importing ``a.b.c`` also
runs ``a`` and ``a.b``, but those implicit arrows to parent packages are not counted: every module would
otherwise sit on a circle through ``robustreg/__init__.py``, which is what the explicit arrows to it show.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import robustreg

ROOT = Path(robustreg.__file__).parent
PLUGIN_PACKAGE = "robustreg_plugins"


def _modules() -> dict[str, tuple[Path, bool]]:
    """``{dotted name: (file, is a package)}`` of every module of ``robustreg/``."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = ["robustreg", *path.relative_to(ROOT).with_suffix("").parts]
        package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if package else parts)] = (path, package)
    return out


def _absolute(module: str, package: bool, level: int, name: str | None) -> str:
    """The dotted target of ``from <level dots><name> import ...`` written in ``module``."""
    if not level:
        return name or ""
    base = module.split(".") if package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _imports(module: str, path: Path, package: bool, modules: set[str]) -> Iterator[tuple[str, int]]:
    """``(imported module, line)`` for every import anywhere in the file (functions and TYPE_CHECKING too)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, package, node.level, node.module)
            submodules = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
            for sub in submodules:
                yield sub, node.lineno
            if len(submodules) < len(node.names):  # a name from the module (or package __init__) itself
                yield target, node.lineno


def import_graph() -> tuple[dict[str, dict[str, int]], list[tuple[str, str, int]]]:
    """``({module: {robustreg module it imports: line}}, [(module, plugin module, line)])``."""
    modules = _modules()
    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    plugins = []
    for name, (path, package) in modules.items():
        for target, line in _imports(name, path, package, set(modules)):
            if target.split(".")[0] == PLUGIN_PACKAGE:
                plugins.append((name, target, line))
            elif target in modules and target != name:
                graph[name].setdefault(target, line)
    return graph, plugins


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One circle ``[a, b, ..., a]`` of the graph, or None (an iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def _show(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def test_the_graph_reader_sees_what_it_must() -> None:
    """The reader finds the arrows this test relies on (it must not pass because it reads nothing)."""
    graph, _ = import_graph()
    assert len(graph) > 50
    assert "robustreg.registry.registrar" in graph["robustreg.registry.hookspecs"]  # under TYPE_CHECKING
    assert "robustreg.evaluation" in graph["robustreg.cli_kit.running"]
    assert "robustreg.registry.hookspecs" in graph["robustreg.registry.manager"]  # from . import hookspecs
    assert find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) in (
        ["a", "b", "c", "a"], ["b", "c", "a", "b"], ["c", "a", "b", "c"])
    assert find_cycle({"a": {"b": 1}, "b": {}, "c": {"a": 1, "b": 1}}) is None


def test_no_import_circle_in_the_core() -> None:
    graph, _ = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, f"import circle: {_show(cycle, graph)}"


def test_no_arrow_up_into_the_command_layer() -> None:
    """``cli`` and ``commands`` are the top floor: nothing below imports them, and no module imports the
    package root (the public API re-exports the modules; a module imports the one it needs)."""
    def on_top(name: str) -> bool:
        return name in ("robustreg.cli", "robustreg.__main__", "robustreg.commands") or name.startswith(
            "robustreg.commands.")

    graph, _ = import_graph()
    up = [f"{a} (line {line}) -> {b}" for a, targets in sorted(graph.items()) for b, line in targets.items()
          if (b == "robustreg" or on_top(b)) and not on_top(a)]
    assert not up, "arrows up: " + "; ".join(up)


def test_the_core_imports_no_plugin() -> None:
    _, plugins = import_graph()
    assert not plugins, "the core imports a plugin: " + "; ".join(f"{m} line {n} imports {t}" for m, t, n in plugins)


def test_import_robustreg_loads_no_cli_layer() -> None:
    """A plugin's ``import robustreg`` loads neither the core's commands nor the command kit (a fresh
    interpreter: this one has imported everything already)."""
    code = ("import robustreg, sys; "
            "print(sorted(m for m in sys.modules if m.startswith(('robustreg.commands', 'robustreg.cli'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_old_helper_names_still_work_with_a_warning() -> None:
    """Plugin API 1.1 promised ``robustreg.add_run_args`` and friends: the same functions, and one warning
    naming the new import."""
    import warnings

    from robustreg import cli_kit
    from robustreg.plugin_api import CLI_KIT_NAMES, RobustregDeprecationWarning

    for name in CLI_KIT_NAMES:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert getattr(robustreg, name) is getattr(cli_kit, name)
        assert [w.category for w in caught] == [RobustregDeprecationWarning]
        assert f"from robustreg.cli_kit import {name}" in str(caught[0].message)
        assert name not in robustreg.__all__
    assert robustreg.UsageError is cli_kit.UsageError
    assert not hasattr(robustreg, "no_such_name")


def test_moved_modules_still_import_from_their_old_paths_with_a_warning() -> None:
    """The registry and comparison files moved into ``registry/`` and ``compare/`` (plugin API 1.1): each old
    path gives the very module of the new one (a fresh interpreter: nothing imported yet), warning once."""
    from robustreg.plugin_api import MOVED_MODULES

    code = ("import importlib, sys, warnings\n"
            "warnings.simplefilter('always')\n"
            "import robustreg\n"
            f"for old, new in {dict(MOVED_MODULES)!r}.items():\n"
            "    with warnings.catch_warnings(record=True) as caught:\n"
            "        warnings.simplefilter('always')\n"
            "        module = importlib.import_module(old)\n"
            "    assert module is importlib.import_module(new), old\n"
            "    assert sys.modules[old] is module, old\n"
            "    assert [str(w.message).split(';')[-1].strip() for w in caught] == [f'import {new}'], caught\n"
            "from robustreg.comparison import compare\n"
            "from robustreg.compare import compare as new_compare\n"
            "assert compare is new_compare\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    assert not any(ROOT.joinpath(f"{old.split('.')[-1]}.py").exists() for old in MOVED_MODULES)
