"""One file per line, named by the line's content: the naming shared by data declared in git
(`agent.specs.data`, `split: lines`) and `pachsync load --split-lines` (`agent.cluster.load`).

Pure. A line file is named by its value, never by its line number, so inserting, removing or
reordering lines changes only the files of those lines, and Pachyderm re-runs only their datums
(a glob like /c_parameters.txt/* gives one datum per file; an unchanged file keeps its datum).
"""

from __future__ import annotations

import hashlib
import re

MAX_PLAIN_NAME = 64
_PLAIN = re.compile(rb"[A-Za-z0-9_.+-]{1,%d}" % MAX_PLAIN_NAME)


def line_name(value: bytes) -> str:
    """The file name of a line: the value itself when it is a short plain word (`0.5`, `rbf`),
    else `line-` and 16 hex digits of its SHA-256. Stable: the same line always gets the same
    name, wherever it is in the file."""
    if _PLAIN.fullmatch(value) and value not in (b".", b".."):
        return value.decode("ascii")
    return "line-" + hashlib.sha256(value).hexdigest()[:16]


def split_lines(content: bytes) -> list[tuple[int, bytes]]:
    """(1-based line number, value) of every non-blank line; the value is stripped of
    surrounding whitespace (so `0.5`, `0.5 ` and `0.5\\r` are one value)."""
    return [(n, raw.strip()) for n, raw in enumerate(content.split(b"\n"), 1) if raw.strip()]


def line_content(value: bytes) -> bytes:
    """What a line file holds: the value and a newline."""
    return value + b"\n"
