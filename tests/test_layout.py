"""The import structure the README's Layout section describes: sr/ and color/ never import cascade/, and no two
modules of the project import each other, directly or around a cycle (TYPE_CHECKING imports included)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cascade", "sr", "color")


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its file (functions and TYPE_CHECKING too)."""
    files = {_module(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph = {}
    for name, path in files.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in files and t != name}
        graph[name] = found
    return graph


def test_the_stage_packages_do_not_import_cascade():
    upward = {
        module: sorted(t for t in targets if t.split(".")[0] == "cascade")
        for module, targets in _imports().items()
        if module.split(".")[0] in ("sr", "color")
    }
    assert upward and not any(upward.values()), upward


def test_no_import_cycles():
    graph = _imports()
    # a package's __init__ re-exporting its modules is not a cycle of the code's layers
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_pipeline_and_folder_layers():
    graph = _imports()
    assert "cascade.folder" in graph["cascade.pipeline"]
    assert not any(t.startswith("cascade.pipeline") for t in graph["cascade.folder"])
