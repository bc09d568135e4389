"""Pachyderm globs: the one cleaner and the one matcher of GlobFile, GetFile's glob paths and
pipeline input globs. Pure, no I/O.

Used by `localpachd.pfs.reading` (GlobFile, GetFile/GetFileTAR of `/dir/*.csv`) and
`localpachd.datums` (pfs input globs; `(...)` captures feed join_on/group_by `$1`), so a datum
glob and GlobFile always agree, as in Pachyderm (which lists datums with GlobFile).

Syntax (gobwas/ohmyglob style, `/` the separator): `*` any run of characters except `/`; `**` any
run including `/`; `?` one character except `/`; `[abc]`, `[a-z]`, `[!abc]`/`[^abc]` (a negated
class never matches `/`); `{a,b}` alternatives (nested, holding any of these); `(...)` capture
groups; `\\x` the character `x`.

Matching runs on RE2 (google-re2): time linear in the path times the pattern, no backtracking
whatever the glob, and the GIL released while it runs, so a hostile glob cannot stall other
requests. Captures follow Go's and Perl's leftmost-first rules (what Pachyderm's regexp engine
gives). Limits keep the worst case small: MAX_GLOB characters, MAX_GROUPS capture groups.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import re2

from localpachd.errors import InvalidArgument

MAX_GLOB = 4096  # characters of a glob
MAX_GROUPS = 32  # capture groups of a glob (each one multiplies the cost of capturing)
RE2_MEMORY = 4 << 20  # bytes per compiled regex (its program and lazily built DFA)


def _refuse(pattern: str, why: str) -> InvalidArgument:
    shown = pattern if len(pattern) <= 80 else pattern[:77] + "..."
    return InvalidArgument(f"glob {shown!r} is invalid: {why}")


def clean_glob(pattern: str) -> str:
    """Pachyderm's glob cleaning: one leading `/`, no trailing `/`, no empty or `.` segments
    (`/./*`, `//*` and `*/` are all `/*`). Control characters and over-long globs are refused."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in pattern):
        raise _refuse(pattern, "it contains a control character")
    if len(pattern) > MAX_GLOB:
        raise _refuse(pattern, f"it is {len(pattern)} characters long; localpachd accepts "
                               f"globs of up to {MAX_GLOB} characters")
    return "/" + "/".join(p for p in pattern.split("/") if p not in ("", "."))


def _lit(ch: str) -> str:
    """A character as a regex literal that RE2 and Python's re read alike."""
    return ch if ch.isalnum() or ord(ch) > 0x7F else "\\" + ch


def _class(pattern: str, i: int) -> tuple[str, int]:
    """The regex of a `[...]` class opening at pattern[i], and the index after it; an
    unterminated `[` is a literal."""
    j = i + 1
    negate = j < len(pattern) and pattern[j] in "!^"
    start = j = j + negate
    while j < len(pattern) and (pattern[j] != "]" or j == start):  # a leading `]` is a member
        j += 1
    if j >= len(pattern):
        return _lit("["), i + 1
    body, items, k = pattern[start:j], [], 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            if body[k] > body[k + 2]:
                raise _refuse(pattern, f"the range {body[k]}-{body[k + 2]} is out of order")
            items.append(_lit(body[k]) + "-" + _lit(body[k + 2]))
            k += 3
        else:
            items.append(_lit(body[k]))
            k += 1
    return ("[^/" if negate else "[") + "".join(items) + "]", j + 1


def glob_to_regex(pattern: str) -> tuple[str, int]:
    """The regex of a cleaned glob (to be matched against a whole path) and its group count."""
    out: list[str] = []
    i = depth = groups = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "[":
            rx, i = _class(pattern, i)
            out.append(rx)
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 1
        elif ch == "\\" and i + 1 < len(pattern):
            out.append(_lit(pattern[i + 1]))
            i += 1
        elif ch in "{}," and (depth or ch == "{"):
            depth += {"{": 1, "}": -1, ",": 0}[ch]
            out.append({"{": "(?:", "}": ")", ",": "|"}[ch])
        else:
            groups += ch == "("
            out.append({"*": "[^/]*", "?": "[^/]", "(": "(", ")": ")"}.get(ch) or _lit(ch))
        i += 1
    return "(?s:" + "".join(out) + ")", groups


def _re2(pattern: str, regex: str, capture: bool) -> Any:
    options = re2.Options()
    options.max_mem = RE2_MEMORY
    options.never_capture = not capture
    options.log_errors = False
    try:
        return re2.compile(regex, options)
    except re2.error as exc:
        raise _refuse(pattern, str(exc) or "it is not a valid glob") from exc


@dataclass(frozen=True)
class Glob:
    """A compiled glob. `matches` answers with RE2's DFA (no captures); `captures` runs the
    capturing program only on paths known to match."""

    pattern: str
    groups: int
    _test: Any
    _capture: Any

    def matches(self, path: str) -> bool:
        return self._test.fullmatch(path) is not None

    def captures(self, path: str) -> tuple[str, ...] | None:
        """The capture groups of a matching path ("" for a group that took no part), or None."""
        if not self.matches(path):
            return None
        if not self.groups:
            return ()
        m = self._capture.fullmatch(path)
        return tuple(g or "" for g in m.groups())


@functools.lru_cache(maxsize=32)
def compile_glob(pattern: str) -> Glob:
    """Compile a cleaned glob (`clean_glob`); InvalidArgument says what is wrong with it."""
    if len(pattern) > MAX_GLOB:
        raise _refuse(pattern, f"it is longer than {MAX_GLOB} characters")
    regex, groups = glob_to_regex(pattern)
    if groups > MAX_GROUPS:
        raise _refuse(pattern, f"it has {groups} capture groups; localpachd accepts up to "
                               f"{MAX_GROUPS}")
    test = _re2(pattern, regex, capture=False)
    return Glob(pattern, groups, test, _re2(pattern, regex, capture=True) if groups else None)


def glob_match(pattern: str, path: str) -> bool:
    """Does a raw glob (cleaned here) match a cleaned path?"""
    return compile_glob(clean_glob(pattern)).matches(path)
