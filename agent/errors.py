"""Typed errors of the sync agent and the one place that maps them to exit codes.

Every layer raises these (never bare exceptions for expected failures); `agent.cli` turns them
into messages and exit codes. Each type says, as class attributes, what happens next: its
`disposition` (retry with backoff, stall until the commit changes, or report and carry on) and
the `kind` that /status, logs and metrics show. `agent.sync` copies both onto the SyncResult and
`agent.runner` decides from the disposition alone, so a new error type is one class here.

Their texts quote file names and values from the repository or the cluster. Every `format`
takes `show`, applied to each value (or line) it prints; the CLI passes
`agent.util.safetext.one_line` (one printable line, never a CI logging command), which this
module cannot import (both are rank 0 in tests/unit/test_layers.py). The fields keep the raw
values, for code and for JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

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


class Disposition(StrEnum):
    """What the agent loop does after a run that ended with an error of a given type."""

    RETRY = "retry"  # may pass by itself: retry with backoff, always on the newest commit
    STALL = "stall"  # the same commit can never succeed: wait until the head moves
    REPORT = "report"  # the rest was applied: say what was kept back, check again at the interval


class PachsyncError(Exception):
    """Base of every error the agent reports to a user. `hint` says what to do about it."""

    exit_code: ClassVar[int] = EXIT_ERROR
    kind: ClassVar[str] = "Error"  # as /status, logs and the metrics' `kind` label show it
    disposition: ClassVar[Disposition] = Disposition.RETRY

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
    kind = "SpecInvalid"
    disposition = Disposition.STALL

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = list(errors)
        lines = "\n".join(e.format() for e in self.errors)
        super().__init__(f"{len(self.errors)} spec error(s):\n{lines}")

    def format(self, show: Show = _as_is) -> str:
        head = f"{len(self.errors)} spec error(s):"
        return "\n".join([head, *(e.format(show=show) for e in self.errors)])


class Transient(PachsyncError):
    """A failure that may pass by itself (cluster down, git unreachable): retry with backoff."""

    kind = "Transient"


class Conflict(PachsyncError):
    """The cluster state forbids the change (e.g. an unmanaged pipeline with the same name)."""

    kind = "Conflict"
    # A run the cluster refused as a whole is retried with backoff (the state may change); a
    # conflict the planner found skips only its pipelines: that run is "partial" (REPORT).


def exit_code_for(exc: BaseException) -> int:
    """The process exit code for an error that reached the top of a command."""
    if isinstance(exc, PachsyncError):
        return exc.exit_code
    return EXIT_ERROR
