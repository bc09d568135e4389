"""Untrusted text made safe for a terminal line, a CI log, JSON, Markdown and Azure log commands.

PURE. Every value that reaches the CLI's output from a repository or a cluster (file names, YAML
keys and values, spec snippets, pipeline names, annotation values, error texts) passes through
one of these functions first; `agent.cli` then guards stdout and stderr as a whole
(`LineGuard`), so a value that escaped both would still not become a logging command.

Why: the Azure Pipelines agent reads every line a step writes (stdout and stderr; `\\r` ends a
line too) and runs the first `##vso[area.event ...]` it finds *anywhere* in it
(microsoft/azure-pipelines-agent, `Command.TryParse`: `message.IndexOf("##vso[")`), so a file
named `x##vso[task.setvariable variable=PACHD_ADDRESS]evil` would redirect the next step. Its
log viewer also formats lines starting with `##[error]`, `##[group]` ....

- `one_line(text)`: one printable line. Control characters, line and paragraph separators,
  lone surrogates (undecodable file names) and Unicode's default-ignorable characters (which a
  culture-aware `IndexOf` skips) are shown as Python escapes (`\\n`, `\\x1b`, `\\u2028`), and
  every `##` becomes `#\\x23`, so the result never holds `##vso[` nor `##[`.
- `azure_data` / `azure_property`: Azure's documented escaping for a logging command's message
  and property values (`%` -> `%AZP25`, CR -> `%0D`, LF -> `%0A`; in properties also
  `;` -> `%3B`, `]` -> `%5D`); `logging_command` builds a whole `##vso[...]` line from them.
- `json_dumps`: `json.dumps` with every non-ASCII character escaped and `##` written `#\\u0023`
  (same document for any JSON parser; no line of it can hold a logging command).
- `md_text` / `md_code` / `md_fence`: Markdown for the PR comment, where a value can neither
  break the table, open a link or HTML tag, nor close a code block.
- `LineGuard`: the output boundary's logic, fed chunks of a stream, returning what is safe to
  write: any `##vso[` (any case) or `##[` is neutralised, also across chunk boundaries.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): invisible, and skipped by
# culture-aware string search, so `#\u200b#vso[` could match `##vso[` there.
_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_IGNORABLE_CLASS = re.compile(
    "[" + "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in _IGNORABLE) + "]")
_NOT_PLAIN = re.compile(r"[^\x20-\x7e]")  # only these characters need a closer look
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_HASHES = "#\\x23"

# What the agent would act on: `##vso[` anywhere (it matches case-sensitively; we do not rely
# on that), and `##[` (log formatting, at the start of a line; neutralised anywhere).
_COMMAND = re.compile(r"##(?=vso\[|\[)", re.IGNORECASE)
_PREFIXES = ("##vso[", "##[")

_AZURE_COMMAND = re.compile(r"[a-z]+\.[a-z]+")
_AZURE_KEY = re.compile(r"[a-z]+")

_MD_SPECIAL = {c: f"&#{ord(c)};" for c in "&<>\"'|`[]*_~\\!#"}
_MD_PLAIN = re.compile(r"[A-Za-z0-9.:/@+=,-]*")
_MERMAID_UNSAFE = re.compile(r"[^A-Za-z0-9_.:/@+ -]")


def _escape_char(ch: str) -> str:
    if ch in _SHORT:
        return _SHORT[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _shown(match: re.Match[str]) -> str:
    """A character as itself if it prints on one line and no string search skips it, else as
    its escape (`isprintable` is False for Cc, Cf, Cs, Zl, Zp and spaces other than ' ')."""
    ch = match[0]
    return ch if ch.isprintable() and not _IGNORABLE_CLASS.match(ch) else _escape_char(ch)


def one_line(text: str) -> str:
    """`text` as one printable line that cannot carry a CI logging command (see module doc)."""
    if text.isascii() and text.isprintable() and "##" not in text:
        return text  # the common case: nothing to do
    return _NOT_PLAIN.sub(_shown, text).replace("##", _HASHES)


def lines_safe(text: str) -> str:
    """Each `\\n`-separated line of `text` made `one_line`: for multi-line messages we built."""
    return "\n".join(one_line(line) for line in text.split("\n"))


def azure_data(text: str) -> str:
    """A logging command's message escaped as Azure Pipelines documents (reversible)."""
    return text.replace("%", "%AZP25").replace("\r", "%0D").replace("\n", "%0A")


def azure_property(text: str) -> str:
    """A logging command's property value escaped as Azure Pipelines documents (reversible)."""
    return azure_data(text).replace(";", "%3B").replace("]", "%5D")


def logging_command(command: str, properties: Mapping[str, object], message: str) -> str:
    """`##vso[command k=v;...]message`: values and message are untrusted, so each is made
    `one_line` and then Azure-escaped; `command` and the keys are the caller's constants."""
    if not _AZURE_COMMAND.fullmatch(command):
        raise ValueError(f"not an Azure logging command name: {command!r}")
    parts = []
    for key, value in properties.items():
        if not _AZURE_KEY.fullmatch(key):
            raise ValueError(f"not an Azure logging command property: {key!r}")
        parts.append(f"{key}={azure_property(one_line(str(value)))}")
    props = (" " + ";".join(parts)) if parts else ""
    return f"##vso[{command}{props}]{azure_data(one_line(message))}"


def json_dumps(obj: Any, **kwargs: Any) -> str:
    """`json.dumps(obj, **kwargs)` (ASCII only) in which no two `#` ever touch."""
    kwargs["ensure_ascii"] = True
    # `#` is never JSON syntax, so every `##` is inside one string, where `\\u0023` means `#`.
    return json.dumps(obj, **kwargs).replace("##", "#\\u0023")


def md_text(text: str) -> str:
    """Plain Markdown text (a table cell, a quote): Markdown and HTML syntax shown literally."""
    return "".join(_MD_SPECIAL.get(ch, ch) for ch in one_line(text))


def html_code(text: str) -> str:
    """`<code>text</code>`, the text escaped as `md_text` (Markdown still parses emphasis and
    backticks around inline HTML), for HTML blocks and for values that are not plain."""
    return f"<code>{md_text(text)}</code>"


def md_code(text: str) -> str:
    """Inline code: `` `name` `` for plain names, else `html_code` (entities are not decoded
    inside backticks, and a backtick in the value would end the span)."""
    line = one_line(text)
    return f"`{line}`" if _MD_PLAIN.fullmatch(line) else html_code(line)


def md_fence(lines: Iterable[str], info: str = "") -> list[str]:
    """A fenced code block around `lines` (each made `one_line`), its fence longer than any run
    of backticks inside, so no value can close it."""
    body = [one_line(line) for line in lines]
    longest = max((len(run) for line in body for run in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + info, *body, fence]


def mermaid_label(text: str) -> str:
    """A Mermaid node label: only characters Mermaid never parses as syntax."""
    return _MERMAID_UNSAFE.sub("_", one_line(text))


def neutralise(text: str) -> str:
    """Every `##vso[` (any case) and `##[` in `text` with its `##` written `#\\x23`."""
    return _COMMAND.sub(lambda _: _HASHES, text)


def _risky_tail(text: str) -> int:
    """Length of the longest suffix of `text` that could start `##vso[` or `##[`."""
    lowered = text[-5:].lower()
    for size in range(len(lowered), 0, -1):
        tail = lowered[-size:]
        if any(p.startswith(tail) for p in _PREFIXES):
            return size
    return 0


class LineGuard:
    """The output boundary's logic, without I/O: `feed` chunks of a stream, write what it
    returns. Complete lines go out at once; a partial line goes out on `flush`, except a tail
    that could begin a logging command together with the next chunk (`##` then `vso[`), which
    waits for that chunk (or for `end`)."""

    def __init__(self) -> None:
        self._pending = ""

    def feed(self, text: str) -> str:
        data = self._pending + text
        cut = max(data.rfind("\n"), data.rfind("\r")) + 1
        self._pending = data[cut:]
        return neutralise(data[:cut])

    def flush(self) -> str:
        """What may be written now of the partial line."""
        keep = _risky_tail(self._pending)
        ready = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(ready):]
        return neutralise(ready)  # no command can straddle `ready` and the tail kept back

    def end(self) -> str:
        """Everything still pending (the stream ends: nothing can follow it)."""
        out, self._pending = neutralise(self._pending), ""
        return out

    def line_start(self) -> str:
        """What to write before a trusted line: the pending partial line, ended."""
        return self.end() + "\n" if self._pending else ""
