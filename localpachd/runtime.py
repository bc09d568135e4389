"""The worker's pluggable runtime interface: how one datum's command is executed.

`localpachd.worker` lays out the datum's scratch directory and environment, builds a `DatumRun`
and hands it to a `Runtime`. Runtimes only execute: they know nothing of PFS, jobs or datums.
Implementations: the plain subprocess runtime (one process per datum) and the warm Python
runtime (forks datums of `python3 -m MODULE` / `python3 script.py` from pre-imported workers).
Both must give identical results: same argv, env, cwd, stdin, exit code, stdout/stderr, files.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class DatumRun:
    """Everything needed to run one datum's command, already rewritten for this machine."""

    argv: tuple[str, ...]  # `python3`/`python` already replaced by sys.executable, /pfs rewritten
    env: dict[str, str] = field(hash=False)  # the complete environment of the process
    cwd: Path  # working_dir, or the scratch directory
    stdin: bytes | None  # transform.stdin joined with newlines plus a final newline, or None
    stdout_path: Path  # where the process's stdout is written
    stderr_path: Path  # where the process's stderr is written
    timeout: float | None = None  # datum_timeout in seconds


@dataclass(frozen=True)
class DatumOutcome:
    returncode: int  # negative: killed by that signal (as subprocess reports it)
    timed_out: bool = False


class Runtime(Protocol):
    """Runs datums; must be safe to call from several worker threads at once."""

    name: str

    def run(self, run: DatumRun) -> DatumOutcome: ...

    def close(self) -> None: ...


RUNTIME_NAMES = ("auto", "subprocess", "warm")


def make_runtime(name: str = "auto", **options: object) -> Runtime:
    """The runtime called `name`: "subprocess", "warm" (localpachd.runtime_warm, when present),
    or "auto" = warm when importable, else subprocess. `options` go to the runtime's constructor.
    """
    if name not in RUNTIME_NAMES:
        choices = ", ".join(RUNTIME_NAMES)
        raise ValueError(f"unknown worker runtime {name!r}: choose one of {choices}")
    if name in ("auto", "warm"):
        try:
            runtime_warm = importlib.import_module("localpachd.runtime_warm")
        except ImportError as e:
            if name == "warm":
                raise ValueError("the warm runtime (localpachd.runtime_warm) is missing") from e
        else:
            factory = getattr(runtime_warm, "make", None) or runtime_warm.WarmRuntime
            return factory(**options)  # type: ignore[no-any-return]
    from localpachd.runtime_subprocess import SubprocessRuntime

    return SubprocessRuntime()
