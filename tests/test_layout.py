"""The package's import structure, read with ``ast`` (no module is imported).

Every ``import w2x...`` / ``from w2x... import`` counts, at module level or inside a
function: no import cycle among w2x's modules, and the network (w2x/nn/) imports nothing
of w2x outside w2x/nn/.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "w2x"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The w2x modules ``path`` imports (``from w2x import x`` counts w2x.x when a module)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:                                  # relative import
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, set(files)) for name, path in files.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}                              # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def _without_package_inits(graph):
    """A package's __init__ re-exporting its modules is not a cycle: ``import w2x.x`` runs
    ``w2x/__init__`` first, which may import ``w2x.x`` itself."""
    return {m: {n for n in deps if not m.startswith(n + ".")} for m, deps in graph.items()}


def test_no_import_cycle_among_w2x_modules():
    cycle = _cycle(_without_package_inits(_graph()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_nn_imports_nothing_of_w2x_outside_nn():
    outside = {m: sorted(n for n in deps if not n.startswith("w2x.nn"))
               for m, deps in _graph().items() if m.startswith("w2x.nn")}
    assert {m: d for m, d in outside.items() if d} == {}


def test_the_graph_sees_imports_inside_functions():
    graph = _graph()
    assert "w2x.download" in graph["w2x.cli.main"]          # imported inside _load_models
    assert "w2x.cli.batch" in graph["w2x.cli.progress"]


def test_no_tool_shadows_a_standard_module():
    """``python tools/X.py`` puts tools/ first on sys.path, so a tools/profile.py is what
    ``import profile`` finds there, and torch's cProfile import breaks in every tool."""
    import sys
    tools = Path(__file__).resolve().parents[1] / "tools"
    clashes = sorted(p.name for p in tools.glob("*.py") if p.stem in sys.stdlib_module_names)
    assert not clashes, f"rename these tools, they shadow standard modules: {clashes}"
