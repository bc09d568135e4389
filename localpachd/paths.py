"""PFS path normalisation and Pachyderm-style glob matching. Pure functions, no I/O.

Used by the pfs servicer (every path a client sends goes through `clean_path`), by GlobFile, and
available to `localpachd.datums` (`glob_regex`) so datum globs and GlobFile agree.

Glob syntax (Pachyderm uses a gobwas-style glob with `/` as separator):
`*` any run of characters except `/`; `**` any run including `/`; `?` one character except `/`;
`[abc]`, `[a-z]`, `[!abc]` / `[^abc]` character classes; `{a,b}` alternatives; `(...)` capture
groups (kept as regex groups so join_on / group_by can use `$1`); `\\x` escapes `x`.
"""

from __future__ import annotations

import re
from functools import lru_cache

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


def _class(pattern: str, i: int) -> tuple[str, int]:
    """Translate a `[...]` class starting at pattern[i] == '['; returns (regex, next index)."""
    j = i + 1
    negate = j < len(pattern) and pattern[j] in "!^"
    if negate:
        j += 1
    body: list[str] = []
    while j < len(pattern) and (pattern[j] != "]" or not body):
        ch = pattern[j]
        body.append("\\\\" if ch == "\\" else ch)
        j += 1
    if j >= len(pattern):
        return re.escape("["), i + 1  # unterminated: a literal '['
    inner = "".join(body)
    return ("[^/" + inner + "]" if negate else "[" + inner + "]"), j + 1


@lru_cache(maxsize=512)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a Pachyderm glob (already cleaned, starting with `/`) to an anchored regex."""
    out: list[str] = []
    i, depth = 0, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            rx, i = _class(pattern, i)
            out.append(rx)
            continue
        elif ch == "{":
            depth += 1
            out.append("(?:")
        elif ch == "}" and depth:
            depth -= 1
            out.append(")")
        elif ch == "," and depth:
            out.append("|")
        elif ch in "()":
            out.append(ch)
        elif ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 1
        else:
            out.append(re.escape(ch))
        i += 1
    try:
        return re.compile("^" + "".join(out) + "$", re.DOTALL)
    except re.error as exc:
        raise InvalidArgument(f"glob {pattern!r} is invalid: {exc}") from exc


def clean_glob(pattern: str) -> str:
    """Normalise a glob the way Pachyderm does before matching: leading `/`, no trailing `/`."""
    if _FORBIDDEN.search(pattern):
        raise InvalidArgument(f"glob {pattern!r} is invalid: it contains a control character")
    stripped = "/" + pattern.strip("/")
    return re.sub("/+", "/", stripped)


def glob_match(pattern: str, path: str) -> bool:
    return glob_regex(clean_glob(pattern)).match(path) is not None
