"""Start and stop the one long-lived process of a spout or service pipeline.

Called by `localpachd.longrun.Supervisor` (spouts) and `localpachd.servicejob.Services`
(services); the runtimes are the only modules that start processes. The process runs in its own
session, so a stop reaches everything it started; its stdout and stderr are appended to one log
file. Given `binds` (a service's datum tree for /pfs, secret folders for their mount paths, a
spout's pachctl config for /pachctl) it runs through `runtime_pfsmount`'s helper in its own mount
namespace where the kernel allows (`runtime_pfsmount.mode()`), as a datum does; elsewhere the
caller's rewriting of those paths in cmd, stdin and env is all there is.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from localpachd import runtime_pfsmount as pfsmount

Process = subprocess.Popen[bytes]
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL


def spawn(argv: Sequence[str], stdin: bytes | None, env: Mapping[str, str], cwd: Path,
          log_path: Path, binds: Sequence[tuple[str, str]] = ()) -> Process | None:  # fmt: skip
    """The started process, or None (the reason appended to the log) if it cannot start."""
    cwd.mkdir(parents=True, exist_ok=True)
    run = list(argv)
    if binds and pfsmount.mode() == pfsmount.NAMESPACE:
        run = pfsmount.wrap(argv, binds, pfsmount.ns_root(binds))
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(
                run, cwd=cwd, env=dict(env), stdout=log, stderr=log,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:  # not found, not executable
            log.write(f"localpachd: cannot start {argv[0]!r}: {exc}\n".encode())
            return None
    if stdin is not None and proc.stdin is not None:
        try:
            proc.stdin.write(stdin)
        except OSError:
            pass  # the process exited before reading: its exit is seen by the supervisor
        finally:
            proc.stdin.close()
    return proc


def stop(proc: Process, grace: float = STOP_GRACE) -> None:
    """End the process group: SIGTERM, then SIGKILL after `grace` seconds; reaps the process."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def kill(proc: Process) -> None:
    """End the process group at once (SIGKILL) and reap the process."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
