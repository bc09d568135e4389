"""Enforces DESIGN.md's layer rules by reading every module's imports (no code is executed).

- `stages` imports neither `agent` nor `localpachd`; `agent` and `localpachd` never import
  each other.
- Inside `agent`, a module imports only from layers below its own (LAYERS).
- Only `agent.cluster` imports grpc / python_pachyderm; only `agent.source` imports git.
- `agent.plan` and `agent.normalize` import no I/O library at all: the planner stays pure.
"""

from __future__ import annotations

import ast
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
    "runner": 5,
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
