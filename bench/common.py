"""Shared helpers of the benchmarks: a localpachd child process, a client, job waiting, results.

Used by every `bench/bench_*.py`. The server is started exactly as the agent's demo starts it
(`python -m localpachd serve --port 0`), with the worker runtime under test, so its start-up,
imports and datum processes are all inside the measured time. The benchmark knows the server
listens when its log line arrives on a pipe (no polling of the log file).

`compile_tree` byte-compiles a checkout's packages first, as installing them does: this
environment sets PYTHONDONTWRITEBYTECODE=1, so in a checkout whose sources changed since their
`.pyc` were written every server, zygote and baseline process compiles them again (~90 ms of
the server's ~0.35 s start-up on 2026-12-06), a cost no installed localpachd pays.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("localpachd", "stages", "bench")  # what the server, its datums and baselines import
_LISTENING = re.compile(rb"listening on (\S+):(\d+)")
TERMINAL = {"JOB_SUCCESS", "JOB_FAILURE", "JOB_KILLED", "JOB_UNRUNNABLE"}


class Skip(Exception):
    """A benchmark cannot run here yet (a piece it needs has not landed)."""


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    address: str
    data_dir: Path

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])


def compile_tree(root: Path = ROOT) -> None:
    """Byte-compile the checkout's packages (see the module docstring); quiet, idempotent."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", *PACKAGES], cwd=root,
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip


@contextmanager
def local_server(runtime: str = "auto", extra: Iterable[str] = ()) -> Iterator[Server]:
    """A fresh localpachd in a temporary directory; stopped and removed afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix="pachsync-bench-"))
    log = open(data_dir / "localpachd.log", "wb")  # noqa: SIM115 - closed below
    cmd = [sys.executable, "-m", "localpachd", "serve", "--host", "127.0.0.1", "--port", "0",
           "--data-dir", str(data_dir / "pachd"), "--runtime", runtime, *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    tee = _Tee(proc, log)
    try:
        yield Server(proc, tee.address(data_dir / "localpachd.log"), data_dir)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        tee.thread.join()
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


class _Tee:
    """Copies the server's output to its log file and finds its "listening on" line as it
    arrives (the benchmark's clock must not wait for a poll to see it)."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Any) -> None:
        self.proc, self.log = proc, log
        self.found = threading.Event()
        self.address_text = ""
        self.thread = threading.Thread(target=self._copy, name="bench-server-log", daemon=True)
        self.thread.start()

    def _copy(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.write(line)
            self.log.flush()
            match = _LISTENING.search(line)
            if match and not self.found.is_set():
                self.address_text = f"{match.group(1).decode()}:{match.group(2).decode()}"
                self.found.set()
        self.found.set()  # the server exited: `address` reports it

    def address(self, log_path: Path, timeout: float = 60) -> str:
        if not self.found.wait(timeout):
            raise RuntimeError(f"localpachd did not start listening within {timeout:.0f}s")
        if not self.address_text:
            self.proc.wait()
            raise RuntimeError(f"localpachd exited ({self.proc.returncode}): "
                               f"{log_path.read_text()[-2000:]}")  # fmt: skip
        return self.address_text


def tree_cpu_seconds(pid: int) -> float:
    """CPU (user + system) used so far by `pid` and its live descendants, including the
    children they have already reaped (Linux /proc; 0.0 elsewhere)."""
    total, todo, tick = 0.0, [pid], os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15]) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError, IndexError):
            continue
    return total


def own_cpu_seconds(pid: int) -> float:
    """CPU (user + system) of `pid` itself, without its children (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:13]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def client(server: Server) -> Any:
    import python_pachyderm

    return python_pachyderm.Client(host=server.host, port=server.port)


def create_pipeline_from_spec(pc: Any, spec: dict[str, Any], update: bool = False) -> None:
    """CreatePipeline from a Pachyderm spec dict (snake_case keys, as in specs/pipelines)."""
    from google.protobuf import json_format
    from python_pachyderm.proto.v2.pps import pps_pb2

    req = json_format.ParseDict(spec, pps_pb2.CreatePipelineRequest(), ignore_unknown_fields=True)
    req.update = update
    pc.create_pipeline_from_request(req)


def newest_jobs(pc: Any, names: Iterable[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        infos = list(pc.list_job(pipeline_name=name))
        if infos:
            out[name] = max(infos, key=lambda i: (i.created.seconds, i.created.nanos))
    return out


def job_state(info: Any) -> str:
    from python_pachyderm.proto.v2.pps import pps_pb2

    return str(pps_pb2.JobState.Name(info.state))


def wait_jobs(pc: Any, names: list[str], timeout: float = 600, after: float = 0.0,
              poll: float = 0.1, expect: Callable[[dict[str, Any]], bool] | None = None,
              ) -> dict[str, Any]:
    """Wait until the newest job of every pipeline is terminal, was created after `after`
    (a time.time()) and satisfies `expect`; returns those jobs (JobInfo).

    Polls only the last pipeline (the DAG's sink) every `poll` seconds: every ListJob makes
    localpachd reconcile its jobs, so polling harder would slow down what is measured.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sink = newest_jobs(pc, names[-1:])
        if sink and _finished(sink[names[-1]], after):
            jobs = newest_jobs(pc, names)
            failed = any(job_state(j) != "JOB_SUCCESS" for j in jobs.values())
            if all(_finished(j, after) for j in jobs.values()) and (
                    expect is None or failed or expect(jobs)):
                return jobs
        time.sleep(poll)
    raise RuntimeError(f"jobs of {names} not finished within {timeout}s")


def wait_commit_sets(pc: Any, commit_ids: Iterable[str]) -> dict[str, Any]:
    """The jobs of each commit set (pipeline -> JobInfo), once all of them have finished.

    InspectJobSet with `wait` (`pachctl wait commitset`): the server answers as each job ends,
    so the time measured ends with the last job, not at the next poll, and no polling RPC
    competes with the work. A later set's job replaces an earlier one of the same pipeline.
    """
    jobs: dict[str, Any] = {}
    for commit_id in commit_ids:
        for info in pc.inspect_job(commit_id, wait=True):
            jobs[info.job.pipeline.name] = info
    return jobs


def _finished(job: Any, after: float) -> bool:
    created = job.created.seconds + job.created.nanos / 1e9
    return job_state(job) in TERMINAL and created >= after


def check(what: str, value: float, target: float, higher_is_better: bool = False) -> dict[str, Any]:
    ok = value >= target if higher_is_better else value <= target
    return {"what": what, "value": round(value, 4), "target": target,
            "op": ">=" if higher_is_better else "<=", "ok": ok}


def show(title: str, figures: dict[str, Any], checks: list[dict[str, Any]]) -> None:
    print(f"\n== {title}")
    width = min(64, max([44, *(len(k) for k in figures), *(len(c["what"]) for c in checks)]))
    for k, v in figures.items():
        print(f"  {k:<{width}} {v}")
    for c in checks:
        mark = "ok" if c["ok"] else "MISSED"
        print(f"  {c['what']:<{width}} {c['value']} (target {c['op']} {c['target']}: {mark})")
