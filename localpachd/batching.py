"""Datum batching (`transform.datum_batching`): one user process per worker slot and job, fed
datum after datum through the slot's worker API (`localpachd.workerapi`, NextDatum).

Called by `localpachd.jobrun.JobRun._run_all` for a batching pipeline: `run_slots` runs one
`Slot` per worker slot (the job's parallelism, as for per-datum runs) on a thread of its own;
the slots take the job's `todo` datums from one shared queue and yield one `DatumResult` per
datum, exactly as the per-datum path does, so recording, incremental skipping and the output
commit are unchanged.

What Pachyderm does (read in pachyderm/pachyderm v2.7.8 and v2.8.9, identical there):

- Start and the first call: `src/server/worker/pipeline/transform/worker.go:
  handleDatumSetBatching` runs the user code once per datum set a worker takes (`start()`:
  `driver.RunUserCode(ctx, logger, nil)`: the worker container's own environment, no datum
  variables) and waits for its first NextDatum. That first call only says "ready": its
  `error` is ignored. A code that exits before calling is an error ("user code exited
  prematurely" when it exits 0). `transform/status.go:Status.NextDatum` passes each request's
  error to the worker and blocks until the next datum's env is ready.
- Each datum: `forEachDatum` -> `datum/datum.go:Set.WithDatum` -> `Datum.withData` lays the
  datum out in a fresh directory and `createEnvFile` writes `/pfs/.env`: the datum's env
  (`driver/driver.go:driver.UserCodeEnv`: os.Environ() plus each input's path and `_COMMIT`,
  join/group variables, PACH_DATUM_ID, PACH_JOB_ID, PACH_OUTPUT_COMMIT_ID), one unquoted
  `KEY=VALUE` per line; `driver.WithActiveData` links it at /pfs. The held NextDatum is answered
  with the same list (NextDatumResponse.env), then the worker waits for the next NextDatum: an
  empty `error` means the datum succeeded (its /pfs/out is uploaded), a non-empty one that
  this attempt failed with that text.
- Failure: any failed attempt (an error reported, the code exiting mid-datum, the datum's
  context ending) makes the deferred restart in handleDatumSetBatching's datum callback stop
  the user code (its context is cancelled: exec.CommandContext kills it) and start it again,
  waiting for the new process's first NextDatum.
- Retries and err_cmd: `Set.WithDatum` tries a datum up to `datum_tries` times
  (`datum.WithRetry(tries-1)`), each attempt on a freshly laid out /pfs and `.env`;
  `Datum.run` runs err_cmd (`driver.RunUserErrorHandlingCode`, with the datum's env) after EACH
  failed attempt (after the restart); if it succeeds the datum ends RECOVERED unless a later
  attempt succeeds (`Datum.handleFailed`).
- datum_timeout: `Datum.Run` puts the attempt under a context with that timeout; the wait for
  the next NextDatum sees it end: a failed attempt, so the code is restarted.
- The end: when the datum set is done, handleDatumSetBatching's deferred `stop()` cancels the
  user code: it is killed while its last NextDatum call is held unanswered.

What localpachd does, and where it differs:

- A slot is one "datum set": its process is started once per slot and job (the job's master
  log says "starting user code (datum batching)" at every start: tests and benchmarks count
  them), through `Runtime.run` on a thread of its own, with the job's env
  (`worker.slot_process`), PPS_WORKER_GRPC_PORT and LOCALPACHD_WORKER_TOKEN of its own endpoint,
  PYTHONUNBUFFERED=1, and PACH_DATUM_ID set to the slot's name (what `Runtime.kill_datum` finds
  it by). None of these is part of the warm runtime's zygote key (`warm.target`), so every slot
  forks from the zygote the pipeline's prewarm loaded. Each start gets a fresh endpoint and
  token: a killed process's held call can never answer for its successor.
- Its /pfs is the slot's scratch tree `<slot>/pfs`, re-laid for each datum by `worker.layout`
  (which keeps the directory: a namespace's /pfs is bound to that inode; if layout had to
  replace it, the process is restarted). `/pfs/.env` and NextDatumResponse.env hold exactly
  `worker.datum_vars` (what `build_env` adds for the datum: transform.env, inputs, `_COMMIT`,
  PACH_*, PPS_*), not the server's environment nor secrets (the process has both already);
  values single-quoted for python-dotenv (`dotenv_text`). In rewrite mode there is no real
  /pfs, so python-pachyderm's `batch_datum()` (`load_dotenv("/pfs/.env")`) finds nothing and
  sets no variable: code that must run there reads `Client().worker.next_datum().env`.
- A failed attempt (error reported, exit, datum_timeout, outputs that cannot be stored) stops
  the process at once; the next one starts only when an attempt needs it (Pachyderm restarts
  before err_cmd even when no datum is left). Retries and err_cmd follow the per-datum path's
  rule (`worker.failed_attempt`, `localpachd.attempts`): err_cmd after each failed attempt, in
  the attempt's /pfs as left. The wait for a process's first
  call is not under datum_timeout (Pachyderm's `start()` is not either): a process that hangs
  before asking waits for StopJob or job_timeout.
- A process that exits before asking for any datum MAX_START_FAILURES times in a row breaks
  the slot: the rest of the datums it takes fail at once, naming why (Pachyderm keeps trying).
- RestartDatum kills the slot's process; that attempt does not use up a try (as per datum).
  StopJob, job_timeout, pipeline update or delete and server shutdown kill it through the
  runtime (`kill_job`, `close`); the slot also polls the job's cancel flag (POLL) and kills
  again, so a process started during a kill never keeps the slot waiting.
- Logs: the process writes to `<slot>.user.log` beside its scratch tree; at every NextDatum,
  exit or kill the bytes written since the last boundary are copied to the log of the datum
  being processed (file offsets: everything the process wrote before its call is in the file
  when the call arrives; what a process prints while starting goes to the first datum it is
  given). The worker lines ("beginning to run user code", "finished running user code
  after ...") stay per datum.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from secrets import token_hex

from localpachd.attempts import Tally, Verdict
from localpachd.datums import Datum
from localpachd.outputs import OutputError, OutputFile
from localpachd.runtime import DatumOutcome, DatumRun
from localpachd.worker import (
    MAX_RESTARTS,
    Collect,
    DatumIO,
    DatumResult,
    JobContext,
    datum_vars,
    failed_attempt,
    gave_up,
    layout,
    note,
    secret_files,
    slot_process,
)
from localpachd.workerapi import PORT_ENV, WORKER_TOKEN_ENV, EndOfBatch, SlotEndpoint

MAX_START_FAILURES = 3  # starts in a row that never reach NextDatum before the slot gives up
POLL = 0.25  # seconds between looks at the job's cancel flag while a slot waits
SPARE = ("secrets",)  # what layout leaves in a slot's root: secret folders bound into its process
START_LINE = "starting user code (datum batching)"
DOLLAR_VAR = "LOCALPACHD_DOLLAR"  # see dotenv_text
CHUNK = 1 << 20  # bytes copied at a time from a slot's log to a datum's
_PLAIN_KEY = re.compile(r"[^=#\s'\"\\\ufeff]+")  # \ufeff: python-dotenv drops a leading BOM


# ---------------------------------------------------------------- /pfs/.env


def dotenv_text(env: Mapping[str, str]) -> str:
    """`env` as lines python-dotenv's `load_dotenv` reads back exactly: values single-quoted
    (`\\` and `'` escaped); a name that is not plain is quoted, one that cannot be written
    (a quote, a line break, or empty) is left out. python-dotenv expands `${NAME}` in every
    value and has no escape for it, so when a value holds `${`, a first line defines
    LOCALPACHD_DOLLAR='$' and each `${` is written `${LOCALPACHD_DOLLAR}{`."""
    lines: list[str] = []
    dollar = any("${" in v for v in env.values())
    if dollar:
        lines.append(f"{DOLLAR_VAR}='$'")
    for key, value in env.items():
        name = _dotenv_key(key)
        if name is None:
            continue
        text = value.replace("\\", "\\\\").replace("'", "\\'")
        if dollar:
            text = text.replace("${", "${" + DOLLAR_VAR + "}{")
        lines.append(f"{name}='{text}'")
    return "".join(line + "\n" for line in lines)


def _dotenv_key(key: str) -> str | None:
    if _PLAIN_KEY.fullmatch(key) and key != DOLLAR_VAR:
        return key
    if key and key != DOLLAR_VAR and not any(c in key for c in "'\r\n"):
        return f"'{key}'"
    return None


def write_dotenv(path: Path, env: Mapping[str, str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(dotenv_text(env))


# ---------------------------------------------------------------- one process's calls


Event = tuple[str, object]  # ("asked", error text) | ("exited", DatumOutcome) | ("timeout", None)


class Calls:
    """Where one user process's NextDatum calls (on the endpoint's threads) meet its slot.

    `next_datum` is the endpoint's callback: it hands the request's error to the slot and blocks
    until the slot answers with the next datum's env (`answer`) or ends (`end`: EndOfBatch,
    which the endpoint holds until it closes). The process's runtime thread reports its exit."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._asked: list[str] = []
        self._answer: dict[str, str] | None = None
        self._exit: DatumOutcome | None = None
        self._over = False

    def next_datum(self, error: str) -> Mapping[str, str]:
        with self._cv:
            if not self._over:
                self._asked.append(error)
                self._cv.notify_all()
            while self._answer is None and not self._over:
                self._cv.wait()
            answer, self._answer = self._answer, None
        if answer is None:
            raise EndOfBatch()
        return answer

    def exited(self, outcome: DatumOutcome) -> None:
        with self._cv:
            self._exit = outcome
            self._cv.notify_all()

    def wait(self, timeout: float) -> Event | None:
        """The next thing that happened (a call first, then the exit), or None after `timeout`."""
        with self._cv:
            self._cv.wait_for(lambda: self._asked or self._exit is not None, timeout)
            if self._asked:
                return "asked", self._asked.pop(0)
            if self._exit is not None:
                return "exited", self._exit
            return None

    def answer(self, env: Mapping[str, str]) -> None:
        with self._cv:
            self._answer = dict(env)
            self._cv.notify_all()

    def end(self) -> None:
        with self._cv:
            self._over = True
            self._cv.notify_all()


@dataclass
class _Proc:
    """One start of a slot's user process."""

    calls: Calls
    endpoint: SlotEndpoint
    thread: threading.Thread
    stack: contextlib.ExitStack  # its secret files
    pfs_ino: int  # the /pfs it was given (a namespace binds this very directory)
    ready: bool = False  # its first NextDatum arrived


# ---------------------------------------------------------------- a slot


@dataclass(frozen=True)
class BatchJob:
    """What the slots of one job need of its run (`localpachd.jobrun` builds it)."""

    ctx: JobContext
    io: DatumIO  # runtime, materialize, ingest, cancelled, limits
    cap: contextlib.AbstractContextManager[object]  # the machine-wide slot, held per datum
    say: Callable[[str, str], None]  # a worker line: (datum ID, or "" for the job; message)
    begin: Callable[[Datum, str], Path]  # a datum starts in the process named so: its log
    end: Callable[[Datum], None]  # it no longer runs
    take_restart: Callable[[str], bool]  # (once) RestartDatum killed this datum's attempt


class Slot:
    """One worker slot of a batching job: its scratch tree `root`, its user process."""

    def __init__(self, job: BatchJob, index: int, root: Path) -> None:
        self.job, self.index, self.root = job, index, root
        self.process_id = f"batching-slot-{index}"  # its process's PACH_DATUM_ID
        self.user_log = root.parent / f"{root.name}.user.log"
        self.log: Path | None = None  # the log of the datum being processed
        self._pos = 0  # bytes of user_log already copied to a datum's log
        self.proc: _Proc | None = None
        self.start_failures = 0
        self.broken = ""  # why this slot runs no more datums

    def run(self, take: Callable[[], Datum | None],
            emit: Callable[[Datum, DatumResult, float], None]) -> None:  # fmt: skip
        """Run the datums `take` gives until it gives None; `emit` each one's result."""
        try:
            self._first()
            while (d := take()) is not None:
                started = time.monotonic()
                if self.job.io.cancelled():
                    emit(d, DatumResult(False, 0, reason="job was stopped"), 0.0)
                    continue
                res = self._datum(d)
                emit(d, res, time.monotonic() - started)
        finally:
            self._stop()

    def _first(self) -> None:
        """Start the process before the first datum, as Pachyderm does (unless it cannot run)."""
        ctx = self.job.ctx
        if not ctx.cmd:
            self.broken = "transform.cmd is empty: localpachd runs no image, so it needs a command"
            return
        pfs_root = layout(Datum(()), self.root, self.job.io.materialize, SPARE)
        run = slot_process(ctx, self.root, self.user_log)
        if not run.cwd.is_dir():
            self.broken = f"working_dir {ctx.working_dir!r} does not exist on this machine"
            return
        if not self.job.io.cancelled():
            self._launch(pfs_root)

    def _datum(self, d: Datum) -> DatumResult:
        job = self.job
        with job.cap:
            self.log = log = job.begin(d, self.process_id)
            job.say(d.id, "beginning to run user code")
            started = time.monotonic()
            try:
                res = self._attempts(d, log)
            finally:
                job.end(d)
            job.say(d.id, f"finished running user code after {time.monotonic() - started:.3f}s")
        return res

    def _attempts(self, d: Datum, log: Path) -> DatumResult:
        ctx, io = self.job.ctx, self.job.io
        if self.broken:
            note(log, self.broken)
            return DatumResult(False, 0, reason=self.broken)
        reason, tally, restarts = "", Tally(ctx.datum_tries), 0
        while tally.verdict is Verdict.RETRY and not io.cancelled() and not self.broken:
            started = time.monotonic()
            files, reason = self._attempt(d, log)
            if files is not None:
                return DatumResult(True, tally.attempt, files,
                                   upload_bytes=sum(o.size for o in files))  # fmt: skip
            if self.job.take_restart(d.id) and restarts < MAX_RESTARTS and not io.cancelled():
                restarts += 1
                note(log, "datum restarted (RestartDatum)")
                continue
            if io.cancelled():
                break
            # note, err_cmd and count: the per-datum path's rule (localpachd.attempts)
            used = time.monotonic() - started
            tally = failed_attempt(ctx, d, self.root, log, io, tally, reason, used)
        return gave_up(tally, reason, io.cancelled())

    def _attempt(self, d: Datum, log: Path) -> tuple[tuple[OutputFile, ...] | None, str]:
        """One attempt: (its outputs, "") or (None, why it failed)."""
        ctx, io = self.job.ctx, self.job.io
        pfs_root = layout(d, self.root, io.materialize, SPARE)
        if self.proc is not None and self.proc.pfs_ino != _ino(pfs_root):
            self._stop()  # layout had to replace /pfs: the process sees the old directory
        if self.proc is None:
            self._launch(pfs_root)
        failed = self._ready()
        if failed:
            return None, failed
        assert self.proc is not None
        env = datum_vars(ctx, d, pfs_root)
        write_dotenv(pfs_root / ".env", env)
        self.proc.calls.answer(env)
        kind, value = self._wait(ctx.datum_timeout)
        self._drain()
        if kind == "asked" and value == "":
            try:
                return Collect(io.ingest, io.limits, io.cancelled)(pfs_root, log), ""
            except OutputError as exc:
                self._stop()
                return None, str(exc)
        self._stop()
        if kind == "asked":
            return None, f"user code reported an error: {_cut(str(value))}"
        if kind == "timeout":
            return None, f"datum timed out after {ctx.datum_timeout}s"
        return None, _exit_reason(value)

    def _ready(self) -> str:
        """Wait for the process's first NextDatum (its error is ignored, as Pachyderm does);
        why it failed ("" once ready). Not under datum_timeout: a start is no datum's work."""
        assert self.proc is not None
        if self.proc.ready:
            return ""
        kind, value = self._wait(None)
        self._drain()
        if kind == "asked":
            self.proc.ready, self.start_failures = True, 0
            return ""
        self._stop()
        self.start_failures += 1
        reason = f"user code exited before asking for a datum ({_exit_reason(value)})"
        if self.start_failures >= MAX_START_FAILURES and not self.job.io.cancelled():
            self.broken = (
                f"user code exited {self.start_failures} times in a row before asking for a "
                f"datum (last: {_exit_reason(value)}); see the log of datum "
                f"{self.log.name if self.log else '?'} for its output: a batching pipeline's "
                "code must call NextDatum (python_pachyderm.batch_all_datums)"
            )  # fmt: skip
        return reason

    def _wait(self, timeout: float | None) -> Event:
        """The process's next call or its exit; ("timeout", None) after `timeout` seconds. While
        the job is cancelled the process is killed again every POLL, until it is gone."""
        assert self.proc is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = POLL if deadline is None else min(POLL, deadline - time.monotonic())
            if left <= 0:
                return "timeout", None
            event = self.proc.calls.wait(left)
            if event is not None:
                return event
            if self.job.io.cancelled():
                self._kill()

    # ------------------------------------------------------------ the process

    def _launch(self, pfs_root: Path) -> None:
        ctx = self.job.ctx
        calls = Calls()
        token = token_hex(16)
        name = f"{ctx.project}/{ctx.pipeline}@{ctx.job_id[:12]} slot {self.index}"
        endpoint = SlotEndpoint(calls.next_datum, token, name)
        port = endpoint.start()
        stack = contextlib.ExitStack()
        stack.enter_context(secret_files(ctx, pfs_root))
        base = slot_process(ctx, self.root, self.user_log)
        run = replace(base, env={**base.env, PORT_ENV: str(port), WORKER_TOKEN_ENV: token,
                                 "PACH_DATUM_ID": self.process_id})  # fmt: skip
        thread = threading.Thread(
            target=self._process,
            args=(run, calls),
            name=f"batch-{ctx.job_id[:8]}-{self.index}",
            daemon=True,
        )
        self.proc = _Proc(calls, endpoint, thread, stack, _ino(pfs_root))
        self.job.say("", f"{START_LINE}: worker slot {self.index}")
        thread.start()

    def _process(self, run: DatumRun, calls: Calls) -> None:
        try:
            outcome = self.job.io.runtime.run(run)
        except Exception as exc:  # the runtime could not start it (logged in its datum log)
            with contextlib.suppress(OSError):
                note(self.user_log, f"cannot run the user code: {type(exc).__name__}: {exc}")
            outcome = DatumOutcome(returncode=127)
        calls.exited(outcome)

    def _kill(self) -> None:
        self.job.io.runtime.kill_datum(self.job.ctx.job_id, self.process_id)

    def _stop(self) -> None:
        """End the process (its held call, if any, gets EndOfBatch), close its endpoint, remove
        its secret files; what it wrote last goes to the current datum's log."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.calls.end()
        while proc.thread.is_alive():  # killed again until the runtime reports it gone
            self._kill()
            proc.thread.join(POLL)
        proc.endpoint.close()
        proc.stack.close()
        self._drain()

    def _drain(self) -> None:
        """Copy what the process wrote since the last boundary to the current datum's log."""
        try:
            fd = os.open(self.user_log, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            size = os.fstat(fd).st_size
            if size > self._pos and self.log is not None:
                with open(self.log, "ab") as out:  # a deleted pipeline's log dir: dropped
                    while self._pos < size:
                        chunk = os.pread(fd, min(CHUNK, size - self._pos), self._pos)
                        if not chunk:
                            break
                        out.write(chunk)
                        self._pos += len(chunk)
            self._pos = max(self._pos, size)
        except FileNotFoundError:
            self._pos = size
        finally:
            os.close(fd)


def _ino(path: Path) -> int:
    return os.stat(path).st_ino


def _cut(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _exit_reason(outcome: object) -> str:
    if not isinstance(outcome, DatumOutcome):
        return "user code exited"
    if outcome.returncode == 0:
        return "user code exited prematurely (exit status 0)"
    if outcome.returncode < 0:
        return f"user code was killed by signal {-outcome.returncode}"
    return f"user code exited with status {outcome.returncode}"


# ---------------------------------------------------------------- the job's slots


def run_slots(job: BatchJob, todo: list[Datum], roots: list[Path]
              ) -> Generator[tuple[Datum, DatumResult, float], None, None]:  # fmt: skip
    """One slot per root, all taking from `todo`; yields (datum, result, seconds) as each datum
    ends, every datum of `todo` once. A slot's crash is raised here. Closing the generator
    (or a crash) stops the slots taking datums; it returns once they finished the one they
    hold and ended their processes."""
    pending: queue.SimpleQueue[Datum] = queue.SimpleQueue()
    for d in todo:
        pending.put(d)
    out: queue.SimpleQueue[tuple[Datum, DatumResult, float] | BaseException] = queue.SimpleQueue()
    halt = threading.Event()

    def take() -> Datum | None:
        if halt.is_set():
            return None
        try:
            return pending.get_nowait()
        except queue.Empty:
            return None

    def slot_main(slot: Slot) -> None:
        try:
            slot.run(take, lambda d, res, took: out.put((d, res, took)))
        except BaseException as exc:  # handed to the job's thread, which records the crash
            out.put(exc)

    threads = [threading.Thread(target=slot_main, args=(Slot(job, k, root),),
                                name=f"batch-slot-{job.ctx.job_id[:8]}-{k}", daemon=True)
               for k, root in enumerate(roots)]  # fmt: skip
    for t in threads:
        t.start()
    try:
        for _ in todo:
            item = out.get()
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        halt.set()
        for t in threads:
            t.join()
