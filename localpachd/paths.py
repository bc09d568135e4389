"""PFS path normalisation. Pure functions, no I/O.

Used by the pfs servicer (every path a client sends goes through `clean_path`) and the pfs file
modules. Globs have their own module, `localpachd.globs`.
"""

from __future__ import annotations

import re

from localpachd.errors import InvalidArgument

_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f]")


def clean_path(path: str) -> str:
    """Return the canonical form `/a/b` (root is `/`) or raise InvalidArgument.

    `.` and empty segments are dropped, `..` pops a segment but may never climb above the repo
    root, and control characters (NUL, newline, ...) are refused: such paths are hostile or broken.
    """
    if _FORBIDDEN.search(path):
        raise InvalidArgument(f"path {path!r} is invalid: it contains a control character")
    parts: list[str] = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if not parts:
                raise InvalidArgument(f"path {path!r} is invalid: it escapes the repo root")
            parts.pop()
            continue
        parts.append(seg)
    return "/" + "/".join(parts)


def parent_dirs(path: str) -> list[str]:
    """Every ancestor directory of a file path, root excluded: `/a/b/c` -> [`/a`, `/a/b`]."""
    segs = path.strip("/").split("/")
    return ["/" + "/".join(segs[:i]) for i in range(1, len(segs))]


def is_under(path: str, directory: str) -> bool:
    """True if `path` is `directory` itself or inside it (both cleaned)."""
    return directory == "/" or path == directory or path.startswith(directory + "/")
