"""Enforces DESIGN.md's layer rules by reading every module's imports (no code is executed).

- `stages` imports neither `agent` nor `localpachd`; `agent` and `localpachd` never import
  each other.
- Inside `agent`, a module imports only from layers below its own (LAYERS).
- Only `agent.cluster` imports grpc / python_pachyderm; only `agent.source` imports git.
- `agent.plan` and `agent.normalize` import no I/O library at all: the planner stays pure.
- No import cycle among the modules of `agent`, counting imports inside functions and relative
  imports (a module graph built from every import statement; a cycle is reported as a path).
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Rank of each first-level module or package of `agent`. A module may import agent modules of a
# strictly lower rank (and its own package). New modules must be placed here.
LAYERS = {
    "errors": 0,
    "util": 0,
    "source": 1,
    "cluster": 1,
    "specs": 2,
    "normalize": 3,
    "plan": 3,
    "sync": 4,
    "bump": 4,
    "report": 4,
    "notify": 4,  # commit statuses and events: below the runner that calls it
    "runner": 5,
    "preview": 5,
    "cli": 6,
    "commands": 6,
    "__main__": 7,
    "__init__": 0,
}
IO_LIBS = {
    "grpc", "python_pachyderm", "git", "subprocess", "socket", "sqlite3", "urllib", "http",
    "requests", "shutil", "tempfile", "threading", "asyncio",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _modules(package: str) -> list[tuple[str, Path]]:
    base = ROOT / package
    out = []
    for path in sorted(base.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        out.append((".".join(rel.parts), path))
    return out


def _top(name: str) -> str:
    return name.split(".")[0]


def _layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


@pytest.mark.parametrize("package", ["agent", "stages", "localpachd"])
def test_packages_exist(package: str) -> None:
    assert _modules(package), f"{package}/ has no modules"


def test_stages_import_neither_agent_nor_localpachd() -> None:
    for module, path in _modules("stages"):
        bad = {n for n in _imports(path) if _top(n) in {"agent", "localpachd"}}
        assert not bad, f"{module} imports {sorted(bad)}"


def test_agent_and_localpachd_stay_apart() -> None:
    for module, path in _modules("agent"):
        bad = {n for n in _imports(path) if _top(n) == "localpachd"}
        assert not bad, f"{module} imports {sorted(bad)}: start localpachd as a process instead"
    for module, path in _modules("localpachd"):
        bad = {n for n in _imports(path) if _top(n) == "agent"}
        assert not bad, f"{module} imports {sorted(bad)}"


def test_agent_layers_point_down() -> None:
    problems = []
    for module, path in _modules("agent"):
        layer = _layer_of(module)
        assert layer in LAYERS, f"{module}: place agent.{layer} in LAYERS of {__file__}"
        for name in _imports(path):
            if _top(name) != "agent" or name == "agent":
                continue
            target = name.split(".")[1]
            if target == layer:
                continue
            if target not in LAYERS:
                continue  # `from agent import x` of a name that is not a module
            if LAYERS[target] >= LAYERS[layer]:
                problems.append(f"{module} (layer {layer}) imports {name} (layer {target})")
    assert not problems, "\n".join(problems)


def test_only_cluster_talks_grpc_and_only_source_talks_git() -> None:
    problems = []
    for module, path in _modules("agent"):
        layer = _layer_of(module)
        for name in _imports(path):
            top = _top(name)
            if top in {"grpc", "python_pachyderm"} and layer != "cluster":
                problems.append(f"{module} imports {name}: only agent.cluster may")
            if top == "git" and layer != "source":
                problems.append(f"{module} imports {name}: only agent.source may")
    assert not problems, "\n".join(problems)


def test_planner_is_pure() -> None:
    for module, path in _modules("agent"):
        if _layer_of(module) not in {"plan", "normalize"}:
            continue
        bad = {n for n in _imports(path) if _top(n) in IO_LIBS}
        assert not bad, f"{module} imports I/O libraries {sorted(bad)}"


def _module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file of every module of `package` under `root` (a package by its own
    name, not `.__init__`)."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imported(module: str, path: Path, node: ast.Import | ast.ImportFrom,
              known: dict[str, Path]) -> set[str]:
    """The modules of `known` an import statement loads: `from a import b` means the module
    a.b when there is one, else a; relative imports are resolved against `module`."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    base = node.module or ""
    if node.level:
        parts = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    return {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """module -> the modules of the same package it imports, from every import statement
    anywhere in it (function-local ones too); a name that is not a module counts as the
    module that defines it."""
    known = _module_names(root, package)
    graph: dict[str, set[str]] = {m: set() for m in known}
    for module, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for name in _imported(module, path, node, known):
                while name and name not in known:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    graph[module].add(name)
    return graph


def import_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a path (first == last), or [] when there is none."""
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        return list(reversed(exc.args[1]))
    return []


def test_no_import_cycle_in_agent() -> None:
    cycle = import_cycle(import_graph(ROOT, "agent"))
    assert not cycle, "import cycle (function-local imports count): " + " -> ".join(cycle)


def test_the_cycle_check_sees_function_local_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .b import thing\n")
    (pkg / "a.py").write_text("def f() -> None:\n    from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from ..c import x\nthing = 1\n")
    (pkg / "c.py").write_text("import os\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.c"}
    assert graph["pkg.sub"] == {"pkg.sub.b"} and import_cycle(graph) == []
    (pkg / "c.py").write_text("def g() -> None:\n    import pkg.a\n")
    assert import_cycle(graph) == []  # the graph is a snapshot
    cycle = import_cycle(import_graph(tmp_path, "pkg"))
    assert cycle[0] == cycle[-1] and set(cycle) == {"pkg.a", "pkg.sub.b", "pkg.c"}
