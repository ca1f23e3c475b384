"""The layout is the architecture: imports checked against what docs/architecture.md says.

* No import cycle between opflow's modules (imports run when a module is imported; imports
  inside functions are deferred on purpose and not part of a cycle).
* The dependency diagram in docs/architecture.md is the one the imports give (all imports,
  deferred ones included): ``python tests/test_architecture.py`` prints it.
* No module in opflow/ over 400 lines unless docs/architecture.md names it as one idea.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "opflow"
DOC = ROOT / "docs" / "architecture.md"
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, modules: dict[str, Path], top_level_only: bool) -> set[str]:
    """opflow modules that ``path`` imports (``from a.b import c`` counts ``a.b.c`` when that
    is a module, else ``a.b``)."""
    tree = ast.parse(path.read_text())
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            targets = [t for t in targets if t in modules] or [base]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` if it has any (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _component(module: str) -> str:
    """``opflow.models.fno`` -> ``models``; top-level modules keep their name."""
    parts = module.split(".")
    if len(parts) == 1:
        return "opflow"
    return "cli" if parts[1] == "__main__" else parts[1]  # ``python -m opflow`` is the CLI


def dependency_diagram() -> str:
    """One line per part of opflow: what it imports from the other parts."""
    modules = _modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        source = _component(name)
        edges[source]  # every part gets a line
        for target in _imports(path, modules, top_level_only=False):
            if _component(target) not in (source, "opflow"):
                edges[source].add(_component(target))
    width = max(len(c) for c in edges)
    return "\n".join(
        f"{c:<{width}}  -> {', '.join(sorted(edges[c])) or '(torch, numpy only)'}"
        for c in sorted(edges)
        if c != "opflow"
    )


def _documented_diagram() -> str:
    text = DOC.read_text()
    match = re.search(r"<!-- dependency diagram -->\n```\n(.*?)\n```", text, re.S)
    assert match, "docs/architecture.md has no '<!-- dependency diagram -->' block"
    return match.group(1)


def test_no_import_cycle_between_modules():
    modules = _modules()
    graph = {n: _imports(p, modules, top_level_only=True) for n, p in modules.items()}
    # a package's __init__ importing its own submodules is how packages are built, not a cycle
    graph = {n: {t for t in ts if not t.startswith(n + ".")} for n, ts in graph.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_documented_dependency_diagram_is_the_one_the_imports_give():
    assert _documented_diagram() == dependency_diagram(), (
        "docs/architecture.md's diagram is stale: replace it with the output of "
        "python tests/test_architecture.py"
    )


def test_modules_over_400_lines_are_named_in_the_architecture_notes():
    text = DOC.read_text()
    long = {
        str(p.relative_to(ROOT)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    unexplained = {p: n for p, n in long.items() if f"`{p}`" not in text}
    assert not unexplained, f"over {MAX_LINES} lines without a note: {unexplained}"


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


if __name__ == "__main__":
    sys.stdout.write(dependency_diagram() + "\n")
