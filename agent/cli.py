"""The `pachsync` command line: parses arguments, dispatches to one command module, maps errors.

Each command lives in `agent/commands/<name>.py`, is named in `COMMANDS`, and exposes
`register(subparsers)`, which adds its parser and sets `func(args) -> int`. Commands stay thin:
the work lives in the layers below (`runner`, `sync`, `plan`, `specs`, `source`, `cluster`), and
they reach pachd through `agent.cluster.client.connected`. Heavy imports happen inside `func`,
so `pachsync --help` stays fast. Exit codes are decided here and in `agent.errors`, nowhere else.

This is also the output boundary. Commands escape every value they print
(`agent.util.safetext`); on top of that, while a command runs, sys.stdout and sys.stderr are
`GuardedStream`s that neutralise any `##vso[` or `##[` the project did not deliberately emit
(through `agent.commands._output.emit_logging_command`), so nothing a pull request controls can
become an Azure Pipelines logging command — tracebacks and library warnings included.

A reader that goes away (`pachsync status | head`) ends the command quietly with 141, as a
process killed by SIGPIPE reports in a shell: no traceback, nothing left to flush at exit.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from agent.errors import EXIT_ERROR, PachsyncError, exit_code_for
from agent.util.safetext import LineGuard, one_line

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `yes | head`

# Order is the order `pachsync --help` lists them.
COMMANDS = (
    "validate",
    "plan",
    "apply",
    "status",
    "load",
    "agent",
    "demo",
    "bump_image",
    "report",
    "preview",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pachsync",
        description="GitOps for Pachyderm pipelines: validate specs, plan and apply them, "
        "and keep a cluster equal to git.",
    )
    parser.add_argument("--version", action="version", version="pachsync 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:  # a name without a module fails here, loudly (ModuleNotFoundError)
        importlib.import_module(f"agent.commands.{name}").register(sub)
    return parser


class GuardedStream(io.TextIOBase):
    """A text stream that writes through `LineGuard` to `raw`; `write_trusted` writes one of the
    project's own logging-command lines as is, at the start of a line."""

    def __init__(self, raw: TextIO) -> None:
        super().__init__()
        self.raw = raw
        self._guard = LineGuard()
        self._lock = threading.Lock()  # the agent logs from several threads

    def write(self, text: str) -> int:
        with self._lock:
            self.raw.write(self._guard.feed(text))
        return len(text)

    def write_trusted(self, line: str) -> None:
        with self._lock:
            self.raw.write(self._guard.line_start() + line.rstrip("\n") + "\n")

    def flush(self) -> None:
        with self._lock:
            self.raw.write(self._guard.flush())
            self.raw.flush()

    def finish(self) -> None:
        """Write out whatever is pending (the command is over: nothing can follow)."""
        with self._lock:
            self.raw.write(self._guard.end())
            self.raw.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self.raw.isatty()

    def fileno(self) -> int:
        return self.raw.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.raw.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self.raw.errors


@contextmanager
def guarded_output() -> Iterator[None]:
    """sys.stdout and sys.stderr guarded for the duration of the block (once, if nested)."""
    if isinstance(sys.stdout, GuardedStream):
        yield
        return
    saved = sys.stdout, sys.stderr
    out, err = GuardedStream(sys.stdout), GuardedStream(sys.stderr)
    sys.stdout, sys.stderr = out, err
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
        try:
            out.finish()
        finally:
            err.finish()  # even when stdout's reader is gone


def main(argv: Sequence[str] | None = None) -> int:
    try:
        with guarded_output():
            return _run(argv)
    except BrokenPipeError:  # what was not read is not wanted: stop, quietly
        _drop_stdout()
        return EXIT_BROKEN_PIPE


def _drop_stdout() -> None:
    """Point fd 1 at /dev/null, so the interpreter's last flush of what is still buffered
    cannot fail again ("Exception ignored ... BrokenPipeError") at exit."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a test's StringIO): nothing is flushed at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_ERROR
    try:
        return int(args.func(args))
    except PachsyncError as exc:
        print(exc.format(show=one_line), file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise  # the reader went away: not a bug (main ends quietly)
    except Exception:  # a bug: its traceback goes through the guard too (exit 1, as Python's)
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
