"""`rewardlab`'s modules form no import cycle and use no other module's private names (issue 15).

Every import counts, the deferred ones inside functions too: a cycle held together by a deferred import
still means two modules that each need the other. Read from the source with `ast`, nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "rewardlab"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """Return (module, names) for every `import`/`from … import` of a rewardlab module in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("rewardlab"):
            for alias in node.names:  # `from rewardlab import answers` names a module, not a value
                submodule = f"{node.module}.{alias.name}"
                found.append((submodule, []) if submodule in MODULES else (node.module, [alias.name]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name.startswith("rewardlab")]
    return found


def _graph() -> dict[str, set[str]]:
    return {name: {module for module, _ in _imports(path)} - {name} for name, path in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Return one import cycle as a list of modules, or None (depth-first search, three colours)."""
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
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_checker_finds_a_cycle():
    assert _cycle({"x": {"y"}, "y": {"z"}, "z": {"x"}}) == ["x", "y", "z", "x"]
    assert _cycle({"x": {"y"}, "y": set()}) is None


def test_rewardlab_has_no_import_cycle():
    assert _cycle(_graph()) is None


def test_no_rewardlab_module_imports_another_ones_private_name():
    private = [
        f"{name} imports {module}.{imported}"
        for name, path in MODULES.items()
        for module, names in _imports(path)
        for imported in names
        if imported.startswith("_") and module != name
    ]
    assert private == []
