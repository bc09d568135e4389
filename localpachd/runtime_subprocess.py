"""The plain subprocess runtime: one OS process per datum attempt.

Chosen by `localpachd.runtimes.make_runtime("subprocess")`, and the warm runtime's fallback for
every command it cannot fork warm. Called from the worker's threads; each call is independent, so
it is thread-safe. The process runs in its own session so a timeout or a kill reaches its whole
process group. Where the kernel allows (`localpachd.runtime_pfsmount.mode()` is NAMESPACE) each
datum runs in its own private mount namespace with its `DatumRun.binds` mounted (a real /pfs):
forked by the runtime's namespace launcher (`runtime_nsclient`, one small process started at the
first such datum), or, when that launcher cannot start the datum, through the per-datum
`runtime_pfsmount` helper that execs the command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable

from localpachd import runtime_pfsmount as pfsmount
from localpachd.runtime import DatumOutcome, DatumRun
from localpachd.runtime_nsclient import LauncherUnavailable, NamespaceLauncher


class SubprocessRuntime:
    name = "subprocess"

    def __init__(self, pfs_mode: Callable[[], str] = pfsmount.mode,
                 launcher: NamespaceLauncher | None = None) -> None:  # fmt: skip
        # how datums see /pfs, asked at the first datum (the probe starts a process)
        self._pfs_mode = pfs_mode
        self.launcher = launcher if launcher is not None else NamespaceLauncher()
        self._lock = threading.Lock()
        # process -> (PACH_JOB_ID, PACH_DATUM_ID)
        self._live: dict[subprocess.Popen[bytes], tuple[str, str]] = {}
        self._closed = False

    def run(self, run: DatumRun) -> DatumOutcome:
        out, err = open_logs(run)
        try:
            if run.binds and self._pfs_mode() == pfsmount.NAMESPACE:
                try:
                    return self.launcher.run(run, out, err)
                except LauncherUnavailable:
                    pass  # nothing ran: the per-datum helper starts it (see _argv)
            proc = self._popen(run, out, err)
        finally:
            for fd in {out, err}:
                os.close(fd)
        if proc is None:
            return DatumOutcome(returncode=127)
        with self._lock:
            if self._closed:
                _kill_group(proc)
            self._live[proc] = (run.env.get("PACH_JOB_ID", ""), run.env.get("PACH_DATUM_ID", ""))
        try:
            return self._wait(proc, run)
        finally:
            with self._lock:
                self._live.pop(proc, None)

    def _popen(self, run: DatumRun, out: int, err: int) -> subprocess.Popen[bytes] | None:
        try:
            return subprocess.Popen(
                self._argv(run),
                cwd=run.cwd,
                env=run.env,
                stdin=subprocess.PIPE if run.stdin is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        except OSError as e:  # command not found, not executable, bad cwd
            os.write(err, f"localpachd: cannot start {run.argv[0]!r}: {e}\n".encode())
            return None

    def _argv(self, run: DatumRun) -> list[str]:
        """The datum's argv, wrapped by the runtime_pfsmount helper in namespace mode."""
        if not run.binds or self._pfs_mode() != pfsmount.NAMESPACE:
            return list(run.argv)
        return pfsmount.wrap(run.argv, run.binds, pfsmount.ns_root(run.binds))

    def _wait(self, proc: subprocess.Popen[bytes], run: DatumRun) -> DatumOutcome:
        try:
            proc.communicate(input=run.stdin, timeout=run.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.wait()
            return DatumOutcome(returncode=proc.returncode, timed_out=True)
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
        return DatumOutcome(returncode=proc.returncode)

    def prewarm(self, run: DatumRun, placeholder: str) -> bool:
        """Nothing to prepare: every datum is a fresh process."""
        return False

    def kill_job(self, job_id: str) -> None:
        """Kill the running datums of one job (StopJob, pipeline update)."""
        with self._lock:
            live = [p for p, (j, _d) in self._live.items() if j == job_id]
        for proc in live:
            _kill_group(proc)
        self.launcher.kill_job(job_id)

    def kill_datum(self, job_id: str, datum_id: str) -> None:
        """Kill one running datum (RestartDatum)."""
        with self._lock:
            live = [p for p, key in self._live.items() if key == (job_id, datum_id)]
        for proc in live:
            _kill_group(proc)
        self.launcher.kill_datum(job_id, datum_id)

    def close(self) -> None:
        """Kill every datum still running (server shutdown, job killed)."""
        with self._lock:
            self._closed = True
            live = list(self._live)
        for proc in live:
            _kill_group(proc)
        self.launcher.close()


def open_logs(run: DatumRun) -> tuple[int, int]:
    """The stdout and stderr files opened for appending, as `open(path, "ab")` would (one
    descriptor when both are the same file, as the worker's datum log is)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
    out = os.open(run.stdout_path, flags, 0o666)
    if run.stderr_path == run.stdout_path:
        return out, out
    try:
        return out, os.open(run.stderr_path, flags, 0o666)
    except OSError:
        os.close(out)
        raise


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
