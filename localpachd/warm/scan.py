"""Finds what a module or script imports by reading its source: no datum code is executed.

Called by the zygote (`localpachd.warm.zygote`) before it preloads a target. The zygote
imports the names found here (numpy, sklearn, the project's own packages ...), but never the
target itself and never a module that lives in the datum's own directory (sys.path[0]): those
change from datum to datum, so they are read for *their* imports instead (a script's helper
module next to it usually imports the heavy libraries).
"""

from __future__ import annotations

import ast
import importlib.util
import os
from collections.abc import Iterable

_MAX_LOCAL_FILES = 50  # bound the walk through a datum directory's own modules


def imports_in_source(source: bytes | str, package: str | None) -> list[str]:
    """Dotted names imported anywhere in `source` (also inside functions), first-seen order.

    `from a import b` yields `a` and `a.b` (b may be a submodule; a failed import is harmless).
    Relative imports are resolved against `package`; without one they are skipped.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    names: dict[str, None] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.name] = None
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(node, package)
            if base is None:
                continue
            names[base] = None
            for alias in node.names:
                if alias.name != "*":
                    names[f"{base}.{alias.name}"] = None
    return list(names)


def _resolve_from(node: ast.ImportFrom, package: str | None) -> str | None:
    if node.level == 0:
        return node.module
    if not package:
        return None
    try:
        return importlib.util.resolve_name("." * node.level + (node.module or ""), package)
    except ImportError:
        return None


def local_file(name: str, path0: str | None) -> str | None:
    """The source file of module `name` when the datum's sys.path[0] provides it, else None."""
    if not path0:
        return None
    parts = name.split(".")
    base = os.path.join(path0, *parts)
    for candidate in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(candidate):
            return candidate
    if os.path.isdir(os.path.join(path0, parts[0])):
        return ""  # a local package (or namespace) without that file: local, nothing to read
    return None


def preload_names(first: Iterable[str], path0: str | None) -> list[str]:
    """Names to import in the zygote: `first` plus the imports of local modules, minus locals."""
    out: dict[str, None] = {}
    todo = list(first)
    seen_files: set[str] = set()
    while todo:
        name = todo.pop(0)
        path = local_file(name, path0)
        if path is None:
            out[name] = None
            continue
        if not path or path in seen_files or len(seen_files) >= _MAX_LOCAL_FILES:
            continue
        seen_files.add(path)
        package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        try:
            with open(path, "rb") as f:
                todo.extend(imports_in_source(f.read(), package or None))
        except OSError:
            continue
    return list(out)
