"""Typed errors of the sync agent and the one place that maps them to exit codes.

Every layer raises these (never bare exceptions for expected failures); `agent.cli` turns them
into messages and exit codes, `agent.runner` decides from their type whether to retry
(`Transient`), stall until the commit changes (`SpecInvalid`) or report (`Conflict`).

Their texts quote file names and values from the repository or the cluster. Every `format`
takes `show`, applied to each value (or line) it prints; the CLI passes
`agent.util.safetext.one_line` (one printable line, never a CI logging command), which this
module cannot import (both are rank 0 in tests/unit/test_layers.py). The fields keep the raw
values, for code and for JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

EXIT_OK = 0
EXIT_CHANGES = 1  # plan --exit-code: changes pending; validate: specs invalid
EXIT_ERROR = 2

Show = Callable[[str], str]


def _as_is(text: str) -> str:
    return text


def _lines(text: str, show: Show) -> str:
    return "\n".join(show(line) for line in text.split("\n"))


@dataclass(frozen=True)
class SpecError:
    """One problem in one spec file: where it is, what is wrong, what to do."""

    file: str
    line: int
    path: str  # dotted spec path, e.g. "transform.image"; "" for the whole document
    message: str
    hint: str = ""

    @property
    def detail(self) -> str:
        """`path: message (hint: …)`: the problem without its location."""
        what = f"{self.path}: {self.message}" if self.path else self.message
        return what + (f" (hint: {self.hint})" if self.hint else "")

    def format(self, severity: str = "", show: Show = _as_is) -> str:
        """`file:line: [severity: ]path: message (hint: …)`, as compilers print it, with the
        file name and the detail passed through `show`."""
        where = f"{show(self.file)}:{self.line}: " + (f"{severity}: " if severity else "")
        return where + show(self.detail)


class PachsyncError(Exception):
    """Base of every error the agent reports to a user. `hint` says what to do about it."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def format(self, show: Show = _as_is) -> str:
        """`error: message` (each of its lines through `show`) and `hint: …`."""
        return f"error: {_lines(self.message, show)}" + \
            (f"\nhint: {show(self.hint)}" if self.hint else "")


class UsageError(PachsyncError):
    """Bad command-line options or arguments."""


class SpecInvalid(PachsyncError):
    """The desired state in git does not validate: nothing is applied until the commit changes."""

    exit_code = EXIT_CHANGES

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = list(errors)
        lines = "\n".join(e.format() for e in self.errors)
        super().__init__(f"{len(self.errors)} spec error(s):\n{lines}")

    def format(self, show: Show = _as_is) -> str:
        head = f"{len(self.errors)} spec error(s):"
        return "\n".join([head, *(e.format(show=show) for e in self.errors)])


class Transient(PachsyncError):
    """A failure that may pass by itself (cluster down, git unreachable): retry with backoff."""


class Conflict(PachsyncError):
    """The cluster state forbids the change (e.g. an unmanaged pipeline with the same name)."""


def exit_code_for(exc: BaseException) -> int:
    """The process exit code for an error that reached the top of a command."""
    if isinstance(exc, PachsyncError):
        return exc.exit_code
    return EXIT_ERROR
