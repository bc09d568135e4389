"""One job's execution: plan datums, skip unchanged ones, run the rest, write the output commit.

Created by `localpachd.jobs.JobEngine` on a thread of its own, with a `JobEnv`: the few things of
the engine a run uses (store, runtime, machine-wide datum slots, scratch, the shutdown flag).
Incremental processing follows Pachyderm 2.x: the output commit starts as a copy of the previous
output commit, whose files are tagged with the datum that wrote them; a datum whose ID and hash
(inputs' content + salt) equal a successful datum of the last successful job is SKIPPED and keeps
its files; every other datum's old files are deleted and it runs again; files of datums that
disappeared are deleted. Outputs and the final job state are written in ONE store transaction at
the end.

Server shutdown (`JobEnv.stopping`) cancels the run like StopJob, but the run then writes
nothing (no datum results, no final state): the job stays unfinished and the next start of the
server runs it again, as after a crash. A datum killed by the shutdown is not a failed datum.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from google.protobuf import duration_pb2
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd import batching, logs, pps_spec, secrets
from localpachd.blobs import CHUNK, BlobRef
from localpachd.datums import (
    Datum,
    DatumError,
    InputSource,
    RepoFile,
    check_duplicate_outputs,
    compute_datums,
    plan_job,
)
from localpachd.outputs import OutputFile, Reader
from localpachd.pfs import files, model
from localpachd.pps import db
from localpachd.pps.db import DatumState, JobState
from localpachd.runtime import Runtime
from localpachd.safepath import safe_join
from localpachd.store import Store, Tx
from localpachd.worker import (
    DatumIO,
    DatumResult,
    JobContext,
    copy_file,
    remove_tree,
    run_datum,
)

RECORD_BATCH = 32  # datum results per progress write
RECORD_EVERY = 0.5  # seconds between progress writes
Record = tuple[Datum, DatumResult, float, str]  # a datum's result, seconds, and hash
Finish = Callable[[dict[str, DatumResult], list[Record]], None]  # every result; last batch


def datum_inputs_json(d: Datum) -> list[db.DatumInputJSON]:
    return [
        {"name": i.name, "project": i.project, "repo": i.repo, "branch": i.branch,
         "commit": i.commit, "path": i.path, "hash": i.hash, "size": i.size}
        for i in d.inputs
    ]  # fmt: skip


def _seconds(d: duration_pb2.Duration) -> float | None:
    total = float(d.seconds) + d.nanos / 1e9
    return total if total > 0 else None


def job_context(job: db.JobRow, spec: pps_pb2.CreatePipelineRequest) -> JobContext:
    return pipeline_context(job.project, job.pipeline, spec, job.id)


def pipeline_context(
    project: str, pipeline: str, spec: pps_pb2.CreatePipelineRequest, job_id: str = ""
) -> JobContext:
    """What the datums of a job of this pipeline share (`job_id` empty: no job yet)."""
    t = spec.transform
    return JobContext(
        project=project,
        pipeline=pipeline,
        job_id=job_id,
        output_commit=job_id,
        cmd=tuple(t.cmd),
        stdin=tuple(t.stdin),
        env=dict(t.env),
        accept_return_code=frozenset(int(c) for c in t.accept_return_code),
        working_dir=t.working_dir,
        datum_timeout=_seconds(spec.datum_timeout) if spec.HasField("datum_timeout") else None,
        datum_tries=spec.datum_tries or pps_spec.DEFAULT_DATUM_TRIES,
        err_cmd=tuple(t.err_cmd),
        err_stdin=tuple(t.err_stdin),
        mount_paths=tuple(m.mount_path for m in t.secrets if m.mount_path),
        datum_batching=bool(t.datum_batching),
    )


def base_datums(tx: Tx, job: db.JobRow, out: model.Commit) -> dict[str, db.DatumRow]:
    """Datums of the nearest earlier successful job along the output commit's parents."""
    parent = out.parent_cid
    while parent is not None:
        c = model.get_commit(tx, parent)
        prev = db.get_job(tx, job.project, job.pipeline, c.id)
        if prev is not None and prev.state == JobState.SUCCESS:
            rows = db.datums_of(tx, job.project, job.pipeline, prev.id)
            return {d.id: d for d in rows if d.state in (DatumState.SUCCESS, DatumState.SKIPPED)}
        if prev is None and c.origin != "AUTO":
            break
        parent = c.parent_cid
    return {}


@dataclass(frozen=True)
class JobEnv:
    """What a job run needs of the engine that starts it."""

    store: Store
    runtime: Runtime
    slots: threading.BoundedSemaphore  # machine-wide datum slots, shared by all running jobs
    cap: int  # their number
    scratch: Path  # where runs make their scratch trees
    stop: threading.Event = field(default_factory=threading.Event)  # set at server shutdown

    @property
    def data_dir(self) -> Path:
        return self.store.data_dir

    @property
    def stopping(self) -> bool:
        """True once the server shuts down: runs then write nothing more."""
        return self.stop.is_set()


def finish_unrun(tx: Tx, job: db.JobRow, state: JobState, reason: str) -> None:
    """End a job that will not (or no longer) run; its output commit finishes with an error."""
    db.update_job(tx, job, state=state, reason=reason, finished=time.time())
    out = model.find_commit(tx, job.project, job.pipeline, job.id)
    if out is not None and not out.is_finished:
        model.finish_commit(tx, out, error=reason)


def _matches(d: Datum, filters: list[str]) -> bool:
    """Pachyderm's datum filter: every filter names one input's path or content hash."""
    return all(any(f in (i.path, i.path.rstrip("/"), i.hash) for i in d.inputs) for f in filters)


class JobGone(Exception):
    """The job's pipeline was deleted between scheduling and the start of its run."""


class JobRun:
    def __init__(self, env: JobEnv, job: db.JobRow, cancel: threading.Event) -> None:
        self.env = env
        self.store = env.store
        self.job = job
        self.cancel = cancel
        self.timed_out = False
        self.ended = False  # its end line was written (by _finalize, inside its transaction)
        self._lock = threading.Lock()
        self.running: dict[str, Datum] = {}  # datum ID -> datum, while its process runs
        self._process_of: dict[str, str] = {}  # datum ID -> PACH_DATUM_ID of its process
        self._restart: set[str] = set()
        self.secrets = secrets.Resolved()  # transform.secrets, resolved when the job starts

    def restart(self, filters: list[str]) -> int:
        """RestartDatum: kill the running datums matching every filter (a path or an input
        hash; none = all); each is started again without using up one of its datum_tries."""
        with self._lock:
            hits = [d for d in self.running.values() if _matches(d, filters)]
            self._restart.update(d.id for d in hits)
            kills = {self._process_of.get(d.id, d.id) for d in hits}
        for process in kills:  # a batching slot's process is named by its slot
            self.env.runtime.kill_datum(self.job.id, process)
        return len(hits)

    def _take_restart(self, datum_id: str) -> bool:
        with self._lock:
            if datum_id in self._restart:
                self._restart.discard(datum_id)
                return True
            return False

    # ------------------------------------------------------------ plan

    def _plan(self) -> tuple[pps_pb2.CreatePipelineRequest, list[Datum], dict[str, db.DatumRow]]:
        job = self.job
        with self.store.read() as tx:
            try:
                spec = db.version_spec(tx, job.project, job.pipeline, job.version)
            except KeyError:  # deleted (DeletePipeline, DeleteAll) since the job was scheduled
                raise JobGone(f"pipeline {job.project}/{job.pipeline} was deleted") from None
            out = model.find_commit(tx, job.project, job.pipeline, job.id)
            if out is None:
                raise DatumError("the job's output commit disappeared")
            prov = {(c.project, c.repo, c.branch): c for c in model.commit_provenance(tx, out.cid)}
            trees: dict[tuple[str, str, str], InputSource] = {}

            def lister(pfs: Mapping[str, Any]) -> InputSource:
                key = (
                    pfs.get("project") or job.project,
                    pfs["repo"],
                    pfs.get("branch") or "master",
                )
                if key not in trees:
                    c = prov.get(key) or model.branch_head(tx, model.BranchKey(*key))
                    if c is None:
                        # Never read a vanished input as empty: that would delete every output.
                        raise DatumError(f"input {key[0]}/{key[1]}@{key[2]} not found")
                    else:
                        entries = files.tree(tx, c.cid)
                        trees[key] = InputSource(
                            c.id, tuple(RepoFile(e.path, e.hash, e.size) for e in entries)
                        )
                return trees[key]

            datums = compute_datums(pps_spec.input_dict(spec.input), lister)
            base = base_datums(tx, job, out)
        return spec, datums, base

    # ------------------------------------------------------------ execute

    def execute(self) -> None:
        job = self.job
        try:
            spec, datums, base = self._plan()
            self.secrets = secrets.resolve(self.env.data_dir, spec.transform.secrets)
        except JobGone:
            return  # its rows went with the pipeline: nothing to record
        except (DatumError, secrets.SecretMissing) as exc:
            with self.store.write() as tx:
                finish_unrun(tx, job, JobState.FAILURE, str(exc))
            return
        every_job = spec.reprocess_spec == pps_spec.REPROCESS_EVERY_JOB
        plan = plan_job(datums, spec.salt, {i: row.hash for i, row in base.items()}, every_job)
        hashes, todo = plan.hashes, plan.todo
        skipped_ids = {d.id for d in plan.skipped}
        if not self._mark_running(datums, plan.skipped, hashes):
            return
        self._say("", f"started job: {len(todo)} datum(s) to process, "
                      f"{len(plan.skipped)} skipped", first=True)  # fmt: skip
        deadline = None
        if spec.HasField("job_timeout") and (limit := _seconds(spec.job_timeout)):
            deadline = threading.Timer(limit, self._timeout)
            deadline.name = f"job-timeout-{job.id[:12]}"
            deadline.daemon = True
            deadline.start()
        try:
            self._run_all(spec, todo, hashes, lambda results, last: self._finalize(
                datums, skipped_ids, results, last))
        finally:
            if deadline is not None:
                deadline.cancel()
                deadline.join()  # no timer thread outlives its job (server shutdown joins jobs)
        self._say_end()

    def _say(self, datum: str, message: str, first: bool = False) -> None:
        """A worker line of this job (`datum` empty: GetLogs sends it as master=true) or of one of
        its datums (master=false, user=false); `first` makes its directory."""
        job = self.job
        path = logs.worker_log(self.env.data_dir, job.project, job.pipeline, job.id)
        if first:
            path.parent.mkdir(parents=True, exist_ok=True)
        logs.append_worker(path, datum, message)

    def _say_end(self) -> None:
        """The job's last worker line, in Pachyderm 2.7's words (none at server shutdown)."""
        with self.store.read() as tx:
            cur = db.get_job(tx, self.job.project, self.job.pipeline, self.job.id)
        if cur is None or self.env.stopping or self.ended:
            return
        self._say_state(cur.state, cur.reason)

    def _say_state(self, state: JobState, reason: str) -> None:
        """The end line for `state` (written once: `ended`)."""
        if state == JobState.SUCCESS:
            self._say("", "job successful, closing commits")
        elif state == JobState.FAILURE:
            self._say("", f"failing job with reason: {reason}")
        elif state == JobState.KILLED:
            self._say("", f"killing job with reason: {reason}")
        else:
            return
        self.ended = True

    def _mark_running(
        self, datums: list[Datum], skipped: list[Datum], hashes: dict[str, str]
    ) -> bool:
        with self.store.write() as tx:
            cur = db.get_job(tx, self.job.project, self.job.pipeline, self.job.id)
            if cur is None or cur.terminal:
                return False
            db.clear_datums(tx, cur)
            for d in skipped:
                db.put_datum(tx, cur, db.DatumRow(
                    cur.id, d.id, hashes[d.id], DatumState.SKIPPED, 0, "", datum_inputs_json(d),
                    0, 0, 0,
                ))  # fmt: skip
            db.update_job(
                tx, cur, state=JobState.RUNNING, started=time.time(), total=len(datums),
                skipped=len(skipped), processed=0, failed=0,
            )  # fmt: skip
        return True

    def _timeout(self) -> None:
        self.timed_out = True
        self.cancel.set()
        self.env.runtime.kill_job(self.job.id)

    def _run_all(
        self, spec: pps_pb2.CreatePipelineRequest, todo: list[Datum], hashes: dict[str, str],
        finish: Finish,
    ) -> None:
        """Run `todo` and `finish` the job with every result, as soon as the last one is in:
        batching slots end their processes and the scratch tree is removed only after the
        output commit is written, so neither delays the next job of the DAG."""
        ctx = replace(job_context(self.job, spec), secret_env=self.secrets.env,
                      secret_mounts=self.secrets.mounts)  # fmt: skip
        workers = min(pps_spec.parallelism(spec, self.env.cap), max(1, len(todo)))
        results: dict[str, DatumResult] = {}
        if not todo:
            finish(results, [])
            return
        # One directory per job for the logs, one per execution for scratch trees: a datum
        # process orphaned by a crash never writes into a later run's scratch.
        log_dir = logs.datum_log(self.env.data_dir, ctx.project, ctx.pipeline, ctx.job_id, "x")
        log_dir.parent.mkdir(parents=True, exist_ok=True)
        scratch = safe_join(self.env.scratch, f"{ctx.job_id[:12]}-{uuid.uuid4().hex[:8]}")
        scratch.mkdir(parents=True)
        # One scratch tree per worker, reused datum after datum (see worker.layout).
        roots = [scratch / f"slot-{k}" for k in range(workers)]
        slots: queue.SimpleQueue[Path] = queue.SimpleQueue()
        for root in roots:
            slots.put(root)
        try:
            if ctx.datum_batching:
                slots_run = batching.run_slots(self._batch_job(ctx), todo, roots)
                with contextlib.closing(slots_run) as done:  # slots joined before scratch goes
                    finish(results, self._collect(done, len(todo), hashes, results))
            else:
                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="datum") as pool:
                    finish(results, self._submit_all(pool, ctx, todo, hashes, slots, results))
        finally:
            remove_tree(scratch)

    def _batch_job(self, ctx: JobContext) -> batching.BatchJob:
        """What the slots of a batching job use of this run (localpachd.batching)."""

        def begin(d: Datum, process: str) -> Path:
            log_path = logs.datum_log(self.env.data_dir, ctx.project, ctx.pipeline,
                                      ctx.job_id, d.id)  # fmt: skip
            _empty_log(log_path)
            with self._lock:
                self.running[d.id] = d
                self._process_of[d.id] = process
            return log_path

        def end(d: Datum) -> None:
            with self._lock:
                self.running.pop(d.id, None)
                self._process_of.pop(d.id, None)

        return batching.BatchJob(
            ctx, self._datum_io(), self.env.slots, self._say, begin, end, self._take_restart
        )

    def _datum_io(self, datum_id: str = "") -> DatumIO:
        blobs = self.store.blobs

        def ingest(src: Reader) -> tuple[str, int]:
            w = blobs.writer()
            try:
                while chunk := src.read(CHUNK):
                    w.write(chunk)
                ref = w.commit()
            except BaseException:
                w.abort()
                raise
            return ref.hash, ref.size

        return DatumIO(
            self.env.runtime, lambda f, dest: copy_file(str(blobs.path(f.hash)), dest),
            ingest, self.cancel.is_set, lambda: self._take_restart(datum_id), reuse_root=True,
        )  # fmt: skip

    def _collect(
        self, done: Iterator[tuple[Datum, DatumResult, float]], count: int,
        hashes: dict[str, str], results: dict[str, DatumResult],
    ) -> list[Record]:  # fmt: skip
        """Take `count` results from `done` (and no more: the caller finishes the job before
        the workers are joined) and record them as they come, in batches: one durable commit
        per datum is too slow. Returns the last batch, left for the job's final transaction."""
        batch: list[Record] = []
        flushed = time.monotonic()
        for _ in range(count):
            d, res, took = next(done)
            results[d.id] = res
            batch.append((d, res, took, hashes[d.id]))
            if len(batch) >= RECORD_BATCH or time.monotonic() - flushed > RECORD_EVERY:
                self._record(batch)
                batch, flushed = [], time.monotonic()
        return batch

    def _submit_all(
        self, pool: ThreadPoolExecutor, ctx: JobContext, todo: list[Datum],
        hashes: dict[str, str], slots: queue.SimpleQueue[Path], results: dict[str, DatumResult],
    ) -> list[Record]:  # fmt: skip
        futs = {pool.submit(self._run_one, ctx, d, slots): d for d in todo}

        def done() -> Iterator[tuple[Datum, DatumResult, float]]:
            for fut in as_completed(futs):
                res, took = fut.result()
                yield futs[fut], res, took

        return self._collect(done(), len(todo), hashes, results)

    def _run_one(
        self, ctx: JobContext, d: Datum, slots: queue.SimpleQueue[Path]
    ) -> tuple[DatumResult, float]:
        if self.cancel.is_set():
            return DatumResult(False, 0, reason="job was stopped"), 0.0
        root = slots.get()  # never empty: one slot per pool thread
        try:
            return self._run_in(ctx, d, root)
        finally:
            slots.put(root)

    def _run_in(self, ctx: JobContext, d: Datum, root: Path) -> tuple[DatumResult, float]:
        log_path = logs.datum_log(self.env.data_dir, ctx.project, ctx.pipeline, ctx.job_id, d.id)
        _empty_log(log_path)
        with self.env.slots:  # held while the datum runs: the machine-wide cap
            started = time.monotonic()
            with self._lock:
                self.running[d.id] = d
            try:
                self._say(d.id, "beginning to run user code")
                res = run_datum(ctx, d, root, log_path, self._datum_io(d.id))
                self._say(d.id, f"finished running user code after "
                                f"{time.monotonic() - started:.3f}s")  # fmt: skip
            finally:
                with self._lock:
                    self.running.pop(d.id, None)
        return res, time.monotonic() - started

    def _record(self, batch: list[Record]) -> None:
        if not batch or self.env.stopping:  # a datum killed by shutdown did not fail
            return
        with self.store.write() as tx:
            cur = db.get_job(tx, self.job.project, self.job.pipeline, self.job.id)
            if cur is None or cur.state != JobState.RUNNING:
                return
            _put_results(tx, cur, batch)

    # ------------------------------------------------------------ finalize

    def _finalize(
        self, datums: list[Datum], skipped_ids: set[str], results: dict[str, DatumResult],
        last: list[Record],
    ) -> None:
        """Record the `last` batch of results and end the job, in one transaction. The job's end
        line is written before that transaction commits, so a client that sees the job ended
        also finds the line (2.7's master logs it before it closes the commits)."""
        job = self.job
        if self.env.stopping:
            return  # server shutdown: the job stays unfinished and runs again after the restart
        with self.store.write() as tx:
            cur = db.get_job(tx, job.project, job.pipeline, job.id)
            if cur is None or cur.state != JobState.RUNNING:
                return  # killed or deleted meanwhile: its outputs are dropped
            _put_results(tx, cur, last)
            state, reason = self._end_state(tx, cur, skipped_ids, results)
            self._say_state(state, reason)

    def _end_state(self, tx: Tx, cur: db.JobRow, skipped_ids: set[str],
                   results: dict[str, DatumResult]) -> tuple[JobState, str]:  # fmt: skip
        """Write the job's end (and its output tree when it succeeded); returns the state."""
        job = self.job
        if self.timed_out:
            return _unrun(tx, cur, JobState.FAILURE, "job timed out")
        failed = [i for i, r in results.items() if not r.ok and not r.recovered]
        if failed or self.cancel.is_set():
            reason = f"{len(failed)} datum(s) failed" if failed else "job was stopped"
            if failed:
                first = results[sorted(failed)[0]]
                reason += f" (datum {sorted(failed)[0]}: {first.reason})"
            return _unrun(tx, cur, JobState.FAILURE, reason)
        out = model.find_commit(tx, job.project, job.pipeline, job.id)
        if out is None or out.is_finished:
            return _unrun(tx, cur, JobState.KILLED, "output commit was finished")
        entries, problem = self._output_tree(tx, out, skipped_ids, results)
        if problem:
            return _unrun(tx, cur, JobState.FAILURE, problem)
        files.replace_tree(tx, out.cid, entries)
        model.finish_commit(tx, model.get_commit(tx, out.cid))
        db.update_job(tx, cur, state=JobState.SUCCESS, finished=time.time())
        return JobState.SUCCESS, ""

    def _output_tree(
        self,
        tx: Tx,
        out: model.Commit,
        skipped_ids: set[str],
        results: dict[str, DatumResult],
    ) -> tuple[list[tuple[str, BlobRef, str]], str | None]:
        kept = [e for e in files.tree(tx, out.cid) if e.datum == "" or e.datum in skipped_ids]
        entries = [(e.path, BlobRef(e.hash, e.size), e.datum) for e in kept]
        for did, res in results.items():
            entries.extend((o.path, BlobRef(o.hash, o.size), did) for o in res.outputs)
        by_datum: dict[str, list[str]] = {}
        for path, _ref, did in entries:
            by_datum.setdefault(did, []).append(path)
        return entries, check_duplicate_outputs(by_datum)


def _put_results(tx: Tx, job: db.JobRow, batch: list[Record]) -> None:
    """The datum rows of `batch` and, in one update, what they add to the job's counters."""
    totals = dict.fromkeys(("processed", "failed", "recovered", "process_time", "upload_bytes",
                            "download_bytes"), 0.0)  # fmt: skip
    for d, res, took, digest in batch:
        size = sum(i.size for i in d.inputs)
        db.put_datum(tx, job, db.DatumRow(
            job.id, d.id, digest, _datum_state(res), res.attempts, res.reason,
            datum_inputs_json(d), took, res.upload_bytes, size,
        ))  # fmt: skip
        totals["processed"] += int(res.ok)
        totals["failed"] += int(not res.ok and not res.recovered)
        totals["recovered"] += int(res.recovered)
        totals["process_time"] += took
        totals["upload_bytes"] += res.upload_bytes
        totals["download_bytes"] += size
    if batch:
        db.bump_job(tx, job, **totals)


def _unrun(tx: Tx, job: db.JobRow, state: JobState, reason: str) -> tuple[JobState, str]:
    finish_unrun(tx, job, state, reason)
    return state, reason


def _datum_state(res: DatumResult) -> DatumState:
    if res.ok:
        return DatumState.SUCCESS
    return DatumState.RECOVERED if res.recovered else DatumState.FAILED


def _empty_log(path: Path) -> None:
    """Create or truncate a datum's log (its directory is made once per job, or again here if
    something removed it meanwhile)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    try:
        os.close(os.open(path, flags, 0o644))
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, flags, 0o644))


__all__ = ["JobRun", "OutputFile"]
