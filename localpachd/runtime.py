"""The worker's pluggable runtime interface: how one datum's command is executed.

`localpachd.worker` lays out the datum's scratch directory and environment, builds a `DatumRun`
and hands it to a `Runtime`. Runtimes only execute: they know nothing of PFS, jobs or datums.
Implementations: the plain subprocess runtime (one process per datum) and the warm Python
runtime (forks datums of `python3 -m MODULE` / `python3 script.py` from pre-imported workers).
Both must give identical results: same argv, env, cwd, stdin, exit code, stdout/stderr, files.
This module is the interface alone (it imports no runtime); `localpachd.runtimes` is the factory
that picks one by name. A new runtime implements `Runtime` and gets a name there.
"""

from __future__ import annotations

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
    # (host dir, path the datum sees it at): its scratch /pfs and secret mount paths, mounted
    # there by a runtime that can (localpachd.runtime_pfsmount), else reached by rewriting only
    binds: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class DatumOutcome:
    returncode: int  # negative: killed by that signal (as subprocess reports it)
    timed_out: bool = False


class Runtime(Protocol):
    """Runs datums; must be safe to call from several worker threads at once."""

    name: str

    def run(self, run: DatumRun) -> DatumOutcome: ...

    def prewarm(self, run: DatumRun, placeholder: str) -> bool:
        """Prepare for datums like `run` before the first arrives (CreatePipeline);
        `placeholder` stands for each datum's own scratch directory in `run`. Returns at once;
        False when there is nothing to prepare."""
        ...

    def kill_job(self, job_id: str) -> None:
        """Kill the running datums of one job (StopJob, pipeline update, job timeout)."""
        ...

    def kill_datum(self, job_id: str, datum_id: str) -> None:
        """Kill one running datum (RestartDatum)."""
        ...

    def close(self) -> None: ...
