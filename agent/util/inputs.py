"""Walks a Pachyderm pipeline's input tree: pfs leaves under cross, union, join and group.

Shared by spec validation (`agent.specs.semantic`), the planner (`agent.plan`) and the report
(`agent.report.collect`), so all three agree on which repos a pipeline reads. Pure.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

COMBINATORS = ("cross", "union", "join", "group")

InputPath = tuple[str | int, ...]  # e.g. ("input", "cross", 1, "pfs")


def walk_pfs(node: Any, path: InputPath = ("input",)
             ) -> Iterator[tuple[InputPath, Mapping[str, Any]]]:
    """Every pfs input under an input node, with its path, in document order (depth first)."""
    if not isinstance(node, Mapping):
        return
    pfs = node.get("pfs")
    if isinstance(pfs, Mapping):
        yield path + ("pfs",), pfs
    for combo in COMBINATORS:
        children = node.get(combo)
        if isinstance(children, (list, tuple)):
            for index, child in enumerate(children):
                yield from walk_pfs(child, path + (combo, index))
