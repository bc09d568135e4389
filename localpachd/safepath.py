"""`safe_join`: the one way localpachd builds a filesystem path from names that arrive in
requests or specs (input names, repo file paths, project and pipeline names, job and datum IDs).

Used by `localpachd.worker` (a datum's scratch tree and environment), `localpachd.jobrun`
(scratch and log directories) and `localpachd.logs` (log files). Pure: no I/O, so the proof is
lexical — every part is a relative path whose segments are never `..`, so the result is `root`
or below it whatever the parts hold. Links inside `root` are the callers' business (the worker
never follows them; see `localpachd.outputs`).
"""

from __future__ import annotations

import os
from pathlib import Path


class UnsafePath(ValueError):
    """A part would leave the root or is not a usable name; nothing was created."""


def _check(root: Path, part: str) -> None:
    where = f"joining {part!r} to {str(root)!r}"
    if not part:
        raise UnsafePath(f"{where}: the name is empty")
    if "\x00" in part:
        raise UnsafePath(f"{where}: the name contains a NUL byte")
    if part.startswith("/"):
        raise UnsafePath(f"{where}: an absolute path leaves {str(root)!r}")
    if ".." in part.split("/"):
        raise UnsafePath(f"{where}: a '..' segment leaves {str(root)!r}")


def safe_join(root: Path, *parts: str) -> Path:
    """`root / part / ...` where each part is a relative path (`name` or `dir/name`; empty and
    `.` segments inside a part are harmless); raises UnsafePath for an empty or absolute part,
    a `..` segment or a NUL byte, instead of returning a path outside `root`."""
    for part in parts:
        _check(root, part)
    joined = root.joinpath(*parts)
    # Belt and braces: the checks above already imply it.
    top = os.path.normpath(root)
    norm = os.path.normpath(joined)
    if norm != top and not norm.startswith(top.rstrip("/") + "/"):
        raise UnsafePath(f"{str(joined)!r} is not under {str(root)!r}")
    return joined


def is_single_name(name: str) -> bool:
    """True if `name` can be one directory entry: not empty, `.` or `..`, no `/` or NUL."""
    return name not in ("", ".", "..") and "/" not in name and "\x00" not in name
