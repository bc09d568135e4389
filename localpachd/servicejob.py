"""Service pipelines run through jobs, as Pachyderm 2.7's service worker runs them.

Called by `localpachd.longrun.Supervisor` (`Services.tend`, on its thread, every pass); the job
engine (`localpachd.jobs`) gives service jobs their rows like any job's but leaves running them
here (`is_service`). What 2.7 does (src/server/worker/pipeline/service/service.go):
- `forEachJob`: the worker subscribes to the pipeline's jobs; each new job cancels the service of
  the job before it, which is then finished (`ppsutil.FinishJob(..., JOB_FINISHING)`: its output
  commit finished, empty, without error; `JobFinisher.Run` in pps/server/transaction_defer.go then
  makes it SUCCESS), and starts a new service for the new job;
- `Run`: the job becomes RUNNING; its input must give exactly one datum ("services must have a
  single datum"); the datum is laid out at /pfs (`datum.Set.WithDatum`, `driver.WithActiveData`)
  and `transform.cmd` runs with the datum's env (`driver.UserCodeEnv`: the inputs, PACH_JOB_ID,
  PACH_DATUM_ID, PACH_OUTPUT_COMMIT_ID, PACH_TOKEN) until the next job; nothing is uploaded. A
  failing process is retried as a datum is (`datum.defaultNumRetries` = 3 more tries, at once);
  after that, or after an exit 0, nothing runs until the next job (which stays RUNNING).
Here a job is taken once its input commits are finished (as every localpachd job); `settle` moves
the jobs in the store, `Services` runs the processes (through `localpachd.runtime_longrun`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd import logs, pps_spec, runtime_longrun, secrets
from localpachd.datums import Datum, DatumError, InputSource, RepoFile, compute_datums
from localpachd.jobrun import finish_unrun, job_context
from localpachd.pfs import files, model
from localpachd.pps import db
from localpachd.pps.db import JobState
from localpachd.runtime_longrun import Process
from localpachd.safepath import UnsafePath, safe_join
from localpachd.store import Store, Tx
from localpachd.worker import (
    build_argv,
    build_env,
    build_stdin,
    copy_file,
    datum_binds,
    layout,
    remove_tree,
    rewrite_pfs,
    secret_dirs,
    secret_files,
)

SINGLE_DATUM = "services must have a single datum"
TRIES = 4  # 2.7: the first try and datum.defaultNumRetries (3) retries
Key = tuple[str, str]  # project, pipeline


def is_service(spec: pps_pb2.CreatePipelineRequest) -> bool:
    """A service pipeline whose jobs run here (a spout with a service stays a spout)."""
    return spec.HasField("service") and not spec.HasField("spout")


# ------------------------------------------------------------------ jobs in the store


READY, WAIT = "ready", "wait"


def _readiness(tx: Tx, job: db.JobRow) -> tuple[str, JobState | None]:
    """(READY, None): its inputs are finished; (WAIT, None): an input is still open; else the
    reason and the state the job ends in: its output commit is gone or finished (KILLED), or an
    input failed (UNRUNNABLE), as `jobs.JobEngine._ready` decides for every other job."""
    out = model.find_commit(tx, job.project, job.pipeline, job.id)
    if out is None or out.is_finished:
        return "the job's output commit was deleted or finished", JobState.KILLED
    for up in model.commit_provenance(tx, out.cid):
        if not up.is_finished:
            return WAIT, None
        if up.error:
            reason = f"unrunnable because upstream commit {up.repo}@{up.id} failed"
            return reason, JobState.UNRUNNABLE
    return READY, None


def _pending(tx: Tx, p: db.PipelineRow) -> list[db.JobRow]:
    return [j for j in db.jobs_of(tx, p.project, p.name) if not j.terminal]


def running_job(tx: Tx, p: db.PipelineRow) -> str | None:
    """The job whose service runs now, when nothing needs settling (`needs_settle` is False):
    the RUNNING one (a job still waiting for its inputs never runs)."""
    running = [j for j in _pending(tx, p) if j.state == JobState.RUNNING]
    return running[-1].id if running else None


def needs_settle(tx: Tx, p: db.PipelineRow) -> bool:
    """Whether `settle` would change a job (read-only, so an idle pass takes no write lock):
    a job other than the RUNNING one is ready or can never run, or the RUNNING one is over."""
    states = [(j, _readiness(tx, j)[0]) for j in _pending(tx, p)]
    if sum(j.state == JobState.RUNNING for j, _r in states) > 1:
        return True
    return any(r != (READY if j.state == JobState.RUNNING else WAIT) for j, r in states)


def settle(tx: Tx, p: db.PipelineRow) -> str | None:
    """Bring the service pipeline's jobs to 2.7's states; the job whose service should run."""
    target: db.JobRow | None = None
    for job in _pending(tx, p):
        reason, end = _readiness(tx, job)
        if reason == READY:
            target = job
        elif end is not None:
            finish_unrun(tx, job, end, reason)
    if target is None:
        return None
    for job in _pending(tx, p):
        if job.seq < target.seq:
            supersede(tx, job)
    if target.state == JobState.RUNNING:
        return target.id
    return _begin(tx, target)


def supersede(tx: Tx, job: db.JobRow) -> None:
    """A newer job replaces this one: its output commit is finished as it is (a service
    uploads nothing) and the job succeeds (2.7: FINISHING, then SUCCESS)."""
    out = model.find_commit(tx, job.project, job.pipeline, job.id)
    if out is not None and not out.is_finished:
        model.finish_commit(tx, out)
    db.update_job(tx, job, state=JobState.SUCCESS, finished=time.time(), reason="")


def _begin(tx: Tx, job: db.JobRow) -> str | None:
    """The job becomes RUNNING, or FAILS when its input is not exactly one datum."""
    try:
        spec = db.version_spec(tx, job.project, job.pipeline, job.version)
        found = job_datums(tx, job, spec)
    except (DatumError, KeyError) as exc:
        finish_unrun(tx, job, JobState.FAILURE, str(exc))
        return None
    if len(found) != 1:
        finish_unrun(tx, job, JobState.FAILURE, SINGLE_DATUM)
        return None
    # 2.7's service worker sets only the state: the job's datum counts stay 0.
    db.update_job(tx, job, state=JobState.RUNNING, started=time.time())
    return job.id


def job_datums(tx: Tx, job: db.JobRow, spec: pps_pb2.CreatePipelineRequest) -> list[Datum]:
    """The datums of the job's input commits (its output commit's provenance)."""
    out = model.find_commit(tx, job.project, job.pipeline, job.id)
    if out is None:
        raise DatumError("the job's output commit disappeared")
    prov = {(c.project, c.repo, c.branch): c for c in model.commit_provenance(tx, out.cid)}

    def lister(pfs: Mapping[str, Any]) -> InputSource:
        key = (pfs.get("project") or job.project, pfs["repo"], pfs.get("branch") or "master")
        c = prov.get(key) or model.branch_head(tx, model.BranchKey(*key))
        if c is None:
            raise DatumError(f"input {key[0]}/{key[1]}@{key[2]} not found")
        entries = files.tree(tx, c.cid)
        return InputSource(c.id, tuple(RepoFile(e.path, e.hash, e.size) for e in entries))

    return compute_datums(pps_spec.input_dict(spec.input), lister)


# ------------------------------------------------------------------ one attempt's process


@dataclass(frozen=True)
class Attempt:
    """One run of a service job's process, laid out and described like a datum's."""

    argv: tuple[str, ...]
    stdin: bytes | None
    env: dict[str, str] = field(repr=False)
    cwd: Path
    binds: tuple[tuple[str, str], ...]
    datum: str
    accept: frozenset[int]
    secret_files: Callable[[], contextlib.AbstractContextManager[None]] = field(repr=False)


def prepare(store: Store, key: Key, job_id: str, root: Path, base_env: Mapping[str, str],
            token: str | None) -> Attempt:  # fmt: skip
    """Lay the job's datum out under `root` (`root/pfs`) and describe its process. Raises
    DatumError, SecretMissing or UnsafePath (the job fails with it) or KeyError (it is gone)."""
    with store.read() as tx:
        job = db.get_job(tx, key[0], key[1], job_id)
        if job is None:
            raise KeyError(job_id)
        spec = db.version_spec(tx, job.project, job.pipeline, job.version)
        found = job_datums(tx, job, spec)
    if len(found) != 1:
        raise DatumError(SINGLE_DATUM)
    resolved = secrets.resolve(store.data_dir, spec.transform.secrets)
    ctx = replace(job_context(job, spec), secret_env=resolved.env, secret_mounts=resolved.mounts)
    blobs = store.blobs
    pfs_root = layout(found[0], root, lambda f, dest: copy_file(str(blobs.path(f.hash)), dest))
    mounts = secret_dirs(ctx, pfs_root)
    env = build_env(ctx, found[0], pfs_root, base=base_env)
    if token is not None:
        env["PACH_TOKEN"] = token  # 2.7's UserCodeEnv: the job's auth token
    cwd = Path(rewrite_pfs(ctx.working_dir, pfs_root, mounts)) if ctx.working_dir else root
    return Attempt(
        argv=build_argv(ctx.cmd, pfs_root, mounts), stdin=build_stdin(ctx.stdin, pfs_root, mounts),
        env=env, cwd=cwd, binds=datum_binds(ctx, pfs_root), datum=found[0].id,
        accept=ctx.accept_return_code, secret_files=lambda: secret_files(ctx, pfs_root),
    )  # fmt: skip


# ------------------------------------------------------------------ the processes


@dataclass
class _Slot:
    """The service of one pipeline: the job it serves and its current attempt's process."""

    job: str
    root: Path
    proc: Process | None = None
    attempt: int = 0  # attempts started
    started: float = 0.0
    done: bool = False  # exited for good: nothing runs until the next job
    datum: str = ""
    accept: frozenset[int] = frozenset()
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


class Services:
    """Runs each running service pipeline's current job (`settle`), one process at a time."""

    def __init__(self, store: Store, base_env: Callable[[], dict[str, str]],
                 token: str | None) -> None:  # fmt: skip
        self.store = store
        self.base_env = base_env  # the server's env plus how to reach it (PACHD_*)
        self.token = token
        self._slots: dict[Key, _Slot] = {}

    def tend(self) -> None:
        """One pass: settle the jobs, end services whose job is over, (re)start the others."""
        targets = self._targets()
        for key in [k for k, s in self._slots.items() if targets.get(k) != s.job]:
            self._end(key, "canceling previous service, new job ready" if targets.get(key)
                      else "")  # fmt: skip
        for key, job in targets.items():
            if job is None:
                continue
            slot = self._slots.get(key)
            if slot is None:
                root = safe_join(self.store.data_dir, "longrun", key[0], key[1], "service", job)
                slot = self._slots[key] = _Slot(job, root)
            self._tend(key, slot)

    def close(self) -> None:
        for key in list(self._slots):
            self._end(key, "")

    def pids(self) -> dict[Key, int]:
        """The live process of each service (tests and diagnostics)."""
        return {k: s.proc.pid for k, s in self._slots.items() if s.proc is not None}

    def _targets(self) -> dict[Key, str | None]:
        with self.store.read() as tx:
            pipes = [p for p in db.all_current(tx) if not p.stopped and is_service(p.spec)]
            if not any(needs_settle(tx, p) for p in pipes):
                return {(p.project, p.name): running_job(tx, p) for p in pipes}
        with self.store.write() as tx:
            pipes = [p for p in db.all_current(tx) if not p.stopped and is_service(p.spec)]
            return {(p.project, p.name): settle(tx, p) for p in pipes}

    def _tend(self, key: Key, slot: _Slot) -> None:
        if slot.done:
            return
        if slot.proc is not None:
            code = slot.proc.poll()
            if code is None:
                return
            took = time.monotonic() - slot.started
            ok = code == 0 or code in slot.accept
            self._say(key, slot.job, slot.datum, f"finished running user code after {took:.3f}s"
                      if ok else f"errored running user code after {took:.3f}s: exit status "
                      f"{code}")  # fmt: skip
            slot.proc = None
            slot.stack.close()  # its secret files
            if ok or slot.attempt >= TRIES:
                slot.done = True
                return
        self._start(key, slot)

    def _start(self, key: Key, slot: _Slot) -> None:
        slot.attempt += 1
        try:
            run = prepare(self.store, key, slot.job, slot.root, self.base_env(), self.token)
        except KeyError:
            slot.done = True  # deleted meanwhile: the next pass ends the slot
            return
        except (DatumError, secrets.SecretMissing, UnsafePath, OSError) as exc:
            slot.done = True
            self._fail(key, slot.job, str(exc))
            return
        if slot.attempt == 1:
            self._say(key, slot.job, "", f"starting new service, job: {slot.job}")
        slot.datum, slot.accept = run.datum, run.accept
        self._say(key, slot.job, run.datum, "beginning to run user code")
        log_path = logs.datum_log(self.store.data_dir, key[0], key[1], slot.job, run.datum)
        slot.stack.enter_context(run.secret_files())
        slot.started = time.monotonic()
        slot.proc = runtime_longrun.spawn(run.argv, run.stdin, run.env, run.cwd, log_path,
                                          run.binds)  # fmt: skip
        if slot.proc is None:  # cannot start: a failed attempt
            slot.stack.close()
            self._say(key, slot.job, run.datum, "errored running user code after 0.000s: "
                      "the command cannot be started")  # fmt: skip
            slot.done = slot.attempt >= TRIES

    def _fail(self, key: Key, job_id: str, reason: str) -> None:
        with self.store.write() as tx:
            job = db.get_job(tx, key[0], key[1], job_id)
            if job is not None and not job.terminal:
                finish_unrun(tx, job, JobState.FAILURE, reason)
        self._say(key, job_id, "", f"failing job with reason: {reason}")

    def _end(self, key: Key, why: str) -> None:
        slot = self._slots.pop(key)
        if why:
            self._say(key, slot.job, "", why)
        if slot.proc is not None:
            runtime_longrun.kill(slot.proc)  # 2.7 cancels the process's context: SIGKILL
        slot.stack.close()
        if os.path.lexists(slot.root):
            remove_tree(slot.root)

    def _say(self, key: Key, job: str, datum: str, message: str) -> None:
        """A worker line of the job (`datum` empty: master) or of its datum; the job's log
        folder is made here (a deleted pipeline's folder is never made again: `logs`)."""
        path = logs.worker_log(self.store.data_dir, key[0], key[1], job)
        with self.store.read() as tx:
            exists = db.get_job(tx, key[0], key[1], job) is not None
        if exists:
            path.parent.mkdir(parents=True, exist_ok=True)
            logs.append_worker(path, datum, message)
