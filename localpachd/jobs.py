"""The job engine: turns open output commits into jobs and runs them, as Pachyderm's PPS master.

Started by `localpachd.pps.register`. One scheduler thread wakes after every store commit:
- `reconcile` gives every open commit on a pipeline's output branch a job row (job ID ==
  output commit ID == commit-set ID), so jobs survive restarts and follow PFS provenance;
- per pipeline (not stopped), the oldest unfinished job runs once all its input commits
  (the output commit's provenance) are finished; an errored input makes it UNRUNNABLE.
A job runs on its own thread (`JobRun`, in `localpachd.jobrun`, given a `JobEnv`): datums are
planned (`localpachd.datums`), unchanged ones are skipped, the rest run on the worker pool, and the
output commit is written and finished in ONE store transaction, so a crash (kill -9) never exposes a
half-written datum: on restart unfinished jobs simply run again.

Shutdown (`close`, a stop hook of the server, run before the store closes): no job starts any
more, running jobs are cancelled and their datum processes killed (the runtime is closed), and
every thread the engine started is joined (bounded). A job cut by shutdown records nothing: it
stays unfinished and runs again after the restart, exactly as after a crash.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd import errors, logs, servicejob
from localpachd.events import COMMIT_STARTED, Event
from localpachd.jobrun import JobEnv, JobRun, finish_unrun, pipeline_context
from localpachd.pfs import model
from localpachd.pps import db
from localpachd.pps.db import JobState
from localpachd.runtime import Runtime
from localpachd.runtimes import make_runtime
from localpachd.store import Store, Tx
from localpachd.worker import prototype_run

log = logging.getLogger("localpachd.jobs")

KILLED_BY_UPDATE = "all jobs killed because pipeline was updated"
CLOSE_WAIT = 30.0  # seconds close() waits for the engine's threads in total


@dataclass
class Active:
    job_id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    run: JobRun | None = None


class JobEngine:
    def __init__(
        self, store: Store, runtime: str = "auto", parallelism_cap: int = 1, start: bool = True
    ) -> None:
        self.store = store
        self.data_dir: Path = store.data_dir
        self.cap = max(1, parallelism_cap)
        # The cap holds machine-wide: datums of all running jobs share these slots.
        self.slots = threading.BoundedSemaphore(self.cap)
        self.runtime: Runtime = make_runtime(runtime)
        self.scratch = self.data_dir / "scratch"
        self._active: dict[tuple[str, str], Active] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.env = JobEnv(store, self.runtime, self.slots, self.cap, self.scratch, self._stop)
        self._timers: set[threading.Timer] = set()  # re-kills after a cancel (see _cancel)
        store.register_schema(db.SCHEMA)
        self._recover()
        store.events.subscribe(self._on_event)
        self._thread = threading.Thread(target=self._loop, name="localpachd-jobs", daemon=True)
        if start:
            self._thread.start()
            with store.read() as tx:
                pipelines = [p for p in db.all_current(tx) if not p.stopped]
            for p in pipelines:  # a restarted server: their next datums find the imports loaded
                self.prewarm(p.project, p.name, p.spec)

    # ------------------------------------------------------------ lifecycle

    def _recover(self) -> None:
        """After a crash: jobs that were running start over (their outputs were never written)."""
        shutil.rmtree(self.scratch, ignore_errors=True)
        with self.store.write() as tx:
            for job in db.unfinished_jobs(tx):
                if job.state != JobState.CREATED:
                    db.clear_datums(tx, job)
                    db.update_job(
                        tx, job, state=JobState.CREATED, started=None, processed=0, skipped=0,
                        failed=0, total=0, restart=job.restart + 1, upload_bytes=0,
                        download_bytes=0, process_time=0,
                    )  # fmt: skip

    @property
    def stopping(self) -> bool:
        """True once close() began: job threads then write nothing more."""
        return self._stop.is_set()

    def close(self, timeout: float = CLOSE_WAIT) -> None:
        """Stop the engine before the store closes: no job starts from now on (`_start`
        checks the flag under the same lock), running jobs are cancelled and their datums
        killed, and the scheduler, job and timer threads are joined within `timeout` s."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._stop.set()
            active = list(self._active.values())
            timers, self._timers = list(self._timers), set()
        self.store.events.bump()  # wakes the scheduler
        for timer in timers:
            timer.cancel()
        for a in active:
            a.cancel.set()
        self.runtime.close()  # kills every datum, and any datum started from now on
        threads: list[threading.Thread] = [self._thread, *timers]
        threads += [a.thread for a in active if a.thread is not None]
        for thread in threads:
            if thread.ident is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        alive = [thread.name for thread in threads if thread.is_alive()]
        if alive:
            log.warning("job engine stopped with threads still running: %s (they touch no "
                        "store after it closes: it refuses them)", ", ".join(alive))

    def prewarm(self, project: str, pipeline: str, spec: pps_pb2.CreatePipelineRequest) -> None:
        """Let the runtime prepare for this pipeline's datums before its first job arrives
        (the warm runtime preloads what the transform imports). Called once CreatePipeline
        committed and, at start, for every pipeline not stopped. Never raises: a failed
        prewarm only means the first datum pays the preload itself."""
        if self._stop.is_set():
            return
        root = self.scratch / "prewarm"
        try:
            root.mkdir(parents=True, exist_ok=True)
            run = prototype_run(pipeline_context(project, pipeline, spec), root)
            if run is not None:
                self.runtime.prewarm(run, str(root))
        except Exception:  # noqa: BLE001 - an optimisation must never fail CreatePipeline
            log.exception("prewarm of pipeline %s/%s failed", project, pipeline)

    def _on_event(self, ev: Event) -> None:
        if ev.kind == COMMIT_STARTED and ev.origin == "AUTO" and not self._stop.is_set():
            with self.store.write() as tx:
                self.reconcile(tx)

    # ------------------------------------------------------------ reconcile

    def reconcile(self, tx: Tx) -> None:
        """Create the job row of every open output commit that has none yet."""
        for project, pipeline, commit_id, version in db.jobless_output_commits(tx):
            db.insert_job(tx, project, pipeline, commit_id, version)

    def sync(self) -> None:
        """Make job rows current before a read RPC (events are delivered asynchronously).
        Checked in a read transaction first: read RPCs must not queue on the write lock."""
        with self.store.read() as tx:
            if not db.jobless_output_commits(tx):
                return
        with self.store.write() as tx:
            self.reconcile(tx)

    # ------------------------------------------------------------ scheduling

    def _loop(self) -> None:
        while not self._stop.is_set():
            seen = self.store.events.version
            try:
                self._schedule()
            except Exception:  # the engine must survive any single bad job
                log.exception("job scheduler pass failed")
            self.store.events.wait_change(seen, 1.0)

    def _schedule(self) -> None:
        with self.store.write() as tx:
            self.reconcile(tx)
            starts = []
            oldest: dict[tuple[str, str], db.JobRow] = {}  # each pipeline's oldest unfinished job
            for j in db.unfinished_jobs(tx):
                oldest.setdefault((j.project, j.pipeline), j)
            for p in db.all_current(tx):
                key = (p.project, p.name)
                with self._lock:
                    busy = key in self._active
                if busy or p.stopped or servicejob.is_service(p.spec):
                    continue  # a service's jobs run in localpachd.servicejob
                job = oldest.get(key)
                if job is not None and self._ready(tx, job):
                    db.update_job(tx, job, state=JobState.STARTING)
                    starts.append(job)
        for job in starts:
            self._start(job)

    def _ready(self, tx: Tx, job: db.JobRow) -> bool:
        """True when every input commit is finished; settles UNRUNNABLE/KILLED jobs itself."""
        out = model.find_commit(tx, job.project, job.pipeline, job.id)
        if out is None or out.is_finished:
            db.update_job(tx, job, state=JobState.KILLED, finished=time.time(),
                          reason="the job's output commit was deleted or finished")  # fmt: skip
            return False
        for up in model.commit_provenance(tx, out.cid):
            if not up.is_finished:
                return False
            if up.error:
                reason = f"unrunnable because upstream commit {up.repo}@{up.id} failed"
                finish_unrun(tx, job, JobState.UNRUNNABLE, reason)
                return False
        return True

    def _start(self, job: db.JobRow) -> None:
        active = Active(job.id)
        run = JobRun(self.env, job, active.cancel)
        active.run = run
        active.thread = threading.Thread(
            target=self._run, args=(job, run), name=f"job-{job.pipeline}", daemon=True
        )
        with self._lock:
            if self._stop.is_set():  # close() took its list of jobs: this one stays unstarted
                return  # (JOB_STARTING: the restart's _recover makes it JOB_CREATED again)
            self._active[(job.project, job.pipeline)] = active
            active.thread.start()

    def _run(self, job: db.JobRow, run: JobRun) -> None:
        try:
            run.execute()
        except Exception as exc:
            if self._stop.is_set():
                return  # shutting down: the job runs again after the restart
            log.exception("job %s/%s@%s crashed", job.project, job.pipeline, job.id)
            with self.store.write() as tx:
                cur = db.get_job(tx, job.project, job.pipeline, job.id)
                if cur is not None and not cur.terminal:
                    finish_unrun(tx, cur, JobState.FAILURE, f"internal error: {exc}")
        finally:
            with self._lock:
                self._active.pop((job.project, job.pipeline), None)
            self.store.events.bump()

    # ------------------------------------------------------------ kills

    def _cancel(self, active: Active) -> None:
        active.cancel.set()
        self.runtime.kill_job(active.job_id)
        # A datum may have been between its last cancel check and its process start.
        again = threading.Timer(0.5, self.runtime.kill_job, args=(active.job_id,))
        again.name = f"rekill-{active.job_id[:12]}"
        again.daemon = True
        with self._lock:
            if self._stop.is_set():
                return  # close() kills everything itself and joins no new timer
            self._timers = {t for t in self._timers if t.is_alive()}
            self._timers.add(again)
            again.start()

    def kill_job(self, tx: Tx, job: db.JobRow, reason: str) -> None:
        """StopJob / update: mark KILLED now (in the caller's tx) and stop its datums."""
        if job.terminal:
            return
        finish_unrun(tx, job, JobState.KILLED, reason)
        with self._lock:
            active = self._active.get((job.project, job.pipeline))
        if active is not None and active.job_id == job.id:
            tx.after_commit(lambda: self._cancel(active))

    def kill_pipeline_jobs(self, tx: Tx, project: str, pipeline: str, reason: str) -> None:
        for job in db.jobs_of(tx, project, pipeline):
            self.kill_job(tx, job, reason)

    def forget(self, project: str, pipeline: str) -> None:
        """After DeletePipeline committed: stop its job thread and drop its logs."""
        with self._lock:
            active = self._active.get((project, pipeline))
        if active is not None:
            self._cancel(active)
        logs.remove_pipeline(self.data_dir, project, pipeline)

    def restart_datums(self, job_ref: pps_pb2.Job, filters: list[str]) -> int:
        """RestartDatum as Pachyderm's workers do it: the job's running datums that match the
        filters are cancelled and started again; with nothing running it is a no-op."""
        project = job_ref.pipeline.project.name or "default"
        with self.store.read() as tx:
            job = db.get_job(tx, project, job_ref.pipeline.name, job_ref.id)
        if job is None:
            raise errors.NotFound(f"job {project}/{job_ref.pipeline.name}@{job_ref.id} not found")
        with self._lock:
            active = self._active.get((job.project, job.pipeline))
        if active is None or active.job_id != job.id or active.run is None:
            return 0
        return active.run.restart(filters)

    def wait_idle(self, project: str, pipeline: str, timeout: float = 30) -> None:
        """Block until the pipeline has no job thread (after a kill, before deleting it)."""
        with self._lock:
            active = self._active.get((project, pipeline))
        if active is not None:
            self._cancel(active)
            if active.thread is not None and active.thread is not threading.current_thread():
                active.thread.join(timeout)
