"""Pachyderm glob patterns against repo paths: which files a pipeline input's glob would see.

Pure. Used by the data planner (`agent.plan.data`: which datums a data change re-runs) and by
`pachsync load` (refuse `--split-lines` into a place no glob sees). Syntax as Pachyderm's
(gobwas/ohmyglob, `/` the separator): `*` any run of characters but `/`, `**` any run, `?` one
character but `/`, `[abc]`, `[a-z]`, `[!abc]` (never `/`), `{a,b}` alternatives, `(...)` groups,
`\\x` the character x. A glob is cleaned as Pachyderm cleans it (one leading `/`, no empty or `.`
segments). Globs come from pull requests, so matching runs on RE2: linear time whatever the glob.

A datum glob matches files and directories; a directory datum holds its whole subtree. So the
datums a set of files falls into are the matched ancestors-or-selves of those files
(`datum_roots`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import re2

MAX_GLOB = 4096  # as localpachd; longer globs are refused (None)
_MEMORY = 4 << 20


def clean_glob(pattern: str) -> str:
    """One leading `/`, no trailing `/`, no empty or `.` segments (`//*`, `/./*`, `*/` -> `/*`)."""
    return "/" + "/".join(p for p in pattern.split("/") if p not in ("", "."))


def _lit(ch: str) -> str:
    return ch if ch.isalnum() or ord(ch) > 0x7F else "\\" + ch


def _char_class(pattern: str, i: int) -> tuple[str, int]:
    """The regex of the `[...]` opening at pattern[i] and the index after it; an unterminated
    `[` is a literal."""
    j = i + 1
    negate = j < len(pattern) and pattern[j] in "!^"
    start = j = j + negate
    while j < len(pattern) and (pattern[j] != "]" or j == start):
        j += 1
    if j >= len(pattern):
        return _lit("["), i + 1
    body, items, k = pattern[start:j], [], 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-" and body[k] <= body[k + 2]:
            items.append(f"{_lit(body[k])}-{_lit(body[k + 2])}")
            k += 3
        else:
            items.append(_lit(body[k]))
            k += 1
    return ("[^/" if negate else "[") + "".join(items) + "]", j + 1


def to_regex(pattern: str) -> str:
    """The regex (matched against a whole cleaned path) of a cleaned glob."""
    out: list[str] = []
    i = depth = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "[":
            rx, i = _char_class(pattern, i)
            out.append(rx)
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 1
        elif ch == "\\" and i + 1 < len(pattern):
            out.append(_lit(pattern[i + 1]))
            i += 1
        elif ch == "{" or (ch in "},") and depth:
            depth += {"{": 1, "}": -1, ",": 0}[ch]
            out.append({"{": "(?:", "}": ")", ",": "|"}[ch])
        else:
            out.append({"*": "[^/]*", "?": "[^/]", "(": "(?:", ")": ")"}.get(ch) or _lit(ch))
        i += 1
    return "(?s:" + "".join(out) + ")"


@functools.lru_cache(maxsize=256)
def compile_glob(pattern: str) -> Any | None:
    """The compiled matcher of a raw glob, or None when Pachyderm would refuse it (too long,
    unbalanced, a control character)."""
    if len(pattern) > MAX_GLOB or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in pattern):
        return None
    options = re2.Options()
    options.max_mem = _MEMORY
    options.never_capture = True
    options.log_errors = False
    try:
        return re2.compile(to_regex(clean_glob(pattern)), options)
    except re2.error:
        return None


def glob_matches(pattern: str, path: str) -> bool:
    """Does the glob match this cleaned path (`/a/b`)? An invalid glob matches nothing."""
    matcher = compile_glob(pattern)
    return matcher is not None and matcher.fullmatch(path) is not None


def ancestors(path: str) -> list[str]:
    """`/a/b/c` -> [`/`, `/a`, `/a/b`, `/a/b/c`]."""
    parts = [p for p in path.split("/") if p]
    return ["/"] + ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def datum_roots(pattern: str, paths: Iterable[str]) -> set[str]:
    """The datums (matched files or directories) that hold any of `paths` under this glob."""
    matcher = compile_glob(pattern)
    if matcher is None:
        return set()
    if clean_glob(pattern) == "/":  # the whole commit is one datum
        return {"/"} if any(True for _ in paths) else set()
    seen: set[str] = {"/"}  # only the glob "/" matches the root
    roots: set[str] = set()
    for path in paths:
        for candidate in ancestors(path):
            if candidate not in seen:
                seen.add(candidate)
                if matcher.fullmatch(candidate) is not None:
                    roots.add(candidate)
    return roots
