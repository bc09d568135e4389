"""Typed errors of the sync agent and the one place that maps them to exit codes.

Every layer raises these (never bare exceptions for expected failures); `agent.cli` turns them
into messages and exit codes, `agent.runner` decides from their type whether to retry
(`Transient`), stall until the commit changes (`SpecInvalid`) or report (`Conflict`).
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_CHANGES = 1  # plan --exit-code: changes pending; validate: specs invalid
EXIT_ERROR = 2


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

    def format(self, severity: str = "") -> str:
        """`file:line: [severity: ]path: message (hint: …)`, as compilers print it."""
        return f"{self.file}:{self.line}: " + (f"{severity}: " if severity else "") + self.detail


class PachsyncError(Exception):
    """Base of every error the agent reports to a user. `hint` says what to do about it."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def format(self) -> str:
        return f"error: {self.message}" + (f"\nhint: {self.hint}" if self.hint else "")


class UsageError(PachsyncError):
    """Bad command-line options or arguments."""


class SpecInvalid(PachsyncError):
    """The desired state in git does not validate: nothing is applied until the commit changes."""

    exit_code = EXIT_CHANGES

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = list(errors)
        lines = "\n".join(e.format() for e in self.errors)
        super().__init__(f"{len(self.errors)} spec error(s):\n{lines}")

    def format(self) -> str:
        return self.message


class Transient(PachsyncError):
    """A failure that may pass by itself (cluster down, git unreachable): retry with backoff."""


class Conflict(PachsyncError):
    """The cluster state forbids the change (e.g. an unmanaged pipeline with the same name)."""


def exit_code_for(exc: BaseException) -> int:
    """The process exit code for an error that reached the top of a command."""
    if isinstance(exc, PachsyncError):
        return exc.exit_code
    return EXIT_ERROR
