"""GetLogs: stream datum logs as Pachyderm `LogMessage`s, by pipeline, job or datum; follow.

Called by the pps servicer. Logs are the files `localpachd.logs` keeps per datum (the user code's
lines: `master=false, user=true`) and per job (the worker's lines). As in Pachyderm 2.7 the
worker's lines about one datum ("beginning to run user code", "finished running user code after
...") are `master=false, user=false`, and only its lines about the whole job (started, finished)
are `master=true`; a request gets the lines whose `master` equals its own (2.7's
FilterLogLines), so a plain request gets the user's lines and the per-datum worker lines. A job's
worker lines are sent before its datums' lines. `since` leaves out lines older than that
(a datum log's lines carry the time the file was last written). With `follow` the stream keeps
polling for new lines until the job is terminal (job scope), the pipeline or job is deleted, or
the client goes away (pipeline scope), like `pachctl logs -f`. Memory stays bounded whatever
the logs' size: lines are read and sent one at a time (`localpachd.logs` cuts a line at
MAX_LINE bytes), and `tail` is a counting pass followed by a skipping one, not a buffer of the
last lines.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd import errors, logs
from localpachd.context import ServerContext
from localpachd.pps import convert, db, pipelines
from localpachd.store import Tx

POLL = 0.2


def _scope(tx: Tx, req: pps_pb2.GetLogsRequest) -> tuple[str, str, list[db.JobRow]]:
    if req.job.id:
        project, name = req.job.pipeline.project.name or "default", req.job.pipeline.name
        job = db.get_job(tx, project, name, req.job.id)
        if job is None:
            raise errors.NotFound(f"job {project}/{name}@{req.job.id} not found")
        return project, name, [job]
    if req.datum.job.id:
        return _scope(tx, pps_pb2.GetLogsRequest(job=req.datum.job))
    project, name = req.pipeline.project.name or "default", req.pipeline.name
    if not name:
        raise errors.InvalidArgument("GetLogs needs a pipeline, a job or a datum")
    pipelines.require(tx, project, name)
    return project, name, db.jobs_of(tx, project, name)


def _inputs(tx: Tx, job: db.JobRow) -> dict[str, list[db.DatumInputJSON]]:
    return {d.id: d.inputs for d in db.datums_of(tx, job.project, job.pipeline, job.id)}


def _wanted(inputs: list[db.DatumInputJSON], filters: list[str]) -> bool:
    if not filters:
        return True
    return all(any(f in (i["path"], i["hash"], i["path"].rstrip("/")) for i in inputs)
               for f in filters)  # fmt: skip


def _message(line: logs.LogLine, inputs: list[db.DatumInputJSON]) -> pps_pb2.LogMessage:
    msg = pps_pb2.LogMessage(
        project_name=line.project, pipeline_name=line.pipeline, job_id=line.job,
        datum_id=line.datum, worker_id="localpachd", user=True, message=line.message,
    )  # fmt: skip
    t = convert.ts(line.ts)
    if t is not None:
        msg.ts.CopyFrom(t)
    for i in inputs:
        msg.data.append(pps_pb2.InputFile(path=i["path"], hash=bytes.fromhex(i["hash"])
                                          if len(i["hash"]) % 2 == 0 else b""))  # fmt: skip
    return msg


def _worker_message(
    line: logs.LogLine, req: pps_pb2.GetLogsRequest, inputs: dict[str, list[db.DatumInputJSON]]
) -> pps_pb2.LogMessage | None:
    """A worker line of the job, or None if the request's filters leave it out: a line about one
    datum is `master=false, user=false`, a line about the job `master=true` (as 2.7 logs them)."""
    rec = logs.worker_line(line.message)
    if rec is None or (req.datum.id and rec.datum != req.datum.id):
        return None
    if req.master == bool(rec.datum):
        return None
    data = inputs.get(rec.datum, [])
    if req.data_filters and not (rec.datum and _wanted(data, list(req.data_filters))):
        return None
    msg = _message(logs.LogLine(line.project, line.pipeline, line.job, rec.datum, rec.ts,
                                rec.message), data)  # fmt: skip
    msg.master, msg.user = not rec.datum, False
    return msg


def _cutoff(req: pps_pb2.GetLogsRequest) -> float:
    """The oldest line time `since` lets through (0: every line)."""
    since = req.since.seconds + req.since.nanos / 1e9
    return time.time() - since if since > 0 else 0.0


def _tails(
    data_dir: Path, req: pps_pb2.GetLogsRequest, jobs: list[db.JobRow],
    inputs: dict[str, dict[str, list[db.DatumInputJSON]]],
    tails: dict[str, logs.Tail],
) -> Iterator[tuple[logs.Tail, db.JobRow, list[db.DatumInputJSON]]]:  # fmt: skip
    """The wanted log files of `jobs` (datum and data filters applied), each with its Tail:
    each job's worker log first (filtered line by line by `_worker_message`), then, without
    `master`, its datums' logs."""
    for job in jobs:
        path = logs.worker_log(data_dir, job.project, job.pipeline, job.id)
        yield tails.setdefault(str(path), logs.Tail(path, job.project, job.pipeline, job.id)
                               ), job, []  # fmt: skip
        if req.master:
            continue
        for path in logs.job_files(data_dir, job.project, job.pipeline, job.id):
            did = path.stem
            if req.datum.id and did != req.datum.id:
                continue
            if not _wanted(inputs[job.id].get(did, []), list(req.data_filters)):
                continue
            tail = tails.setdefault(str(path), logs.Tail(path, job.project, job.pipeline, job.id))
            yield tail, job, inputs[job.id].get(did, [])


def _shown(req: pps_pb2.GetLogsRequest, line: logs.LogLine,
           inputs: dict[str, list[db.DatumInputJSON]], data: list[db.DatumInputJSON],
           cutoff: float) -> pps_pb2.LogMessage | None:  # fmt: skip
    """The message of a line, or None if `master`, the filters or `since` leave it out."""
    worker = line.datum == logs.WORKER_STEM
    msg = _worker_message(line, req, inputs) if worker else _message(line, data)
    if msg is None or (cutoff and msg.ts.ToNanoseconds() < cutoff * 1e9):
        return None
    return msg


def _count(
    req: pps_pb2.GetLogsRequest, wanted: list[tuple[logs.Tail, db.JobRow, list[db.DatumInputJSON]]],
    final: dict[str, bool], ends: dict[str, int | None],
    inputs: dict[str, dict[str, list[db.DatumInputJSON]]], cutoff: float,
) -> int:  # fmt: skip
    """How many messages the first pass sends (for `tail`), without consuming any line: raw
    lines of a datum log when every line is sent, else each line read again (streamed) and
    filtered (always so for a worker log)."""
    return sum(_count_one(req, t, j, final[j.id], ends[str(t.path)] or 0, inputs[j.id], data,
                          cutoff) for t, j, data in wanted)  # fmt: skip


def _count_one(
    req: pps_pb2.GetLogsRequest, tail: logs.Tail, job: db.JobRow, final: bool, end: int,
    inputs: dict[str, list[db.DatumInputJSON]], data: list[db.DatumInputJSON], cutoff: float,
) -> int:  # fmt: skip
    if tail.datum != logs.WORKER_STEM and not cutoff:
        return tail.count(final, end)
    return sum(1 for line in logs.Tail(tail.path, job.project, job.pipeline, job.id).read(
                   final, end)
               if _shown(req, line, inputs, data, cutoff) is not None)  # fmt: skip


def get_logs(ctx: ServerContext, req: pps_pb2.GetLogsRequest, context: grpc.ServicerContext
             ) -> Iterator[pps_pb2.LogMessage]:  # fmt: skip
    """Streams: one line in memory at a time (at most `logs.MAX_LINE` bytes of it). `tail`
    counts the lines first (up to each file's size then) and skips all but the last ones."""
    tails: dict[str, logs.Tail] = {}
    first = True
    cutoff = _cutoff(req)
    ctx.pps_engine.sync()  # once: later polls only read (the engine keeps job rows current)
    while True:
        with ctx.store.read() as tx:
            try:
                _project, _name, jobs = _scope(tx, req)
            except errors.NotFound:
                if first:
                    raise
                return  # followed, then deleted: the stream ends (Pachyderm's pods go too)
            inputs = {j.id: _inputs(tx, j) for j in jobs}
            terminal = all(j.terminal for j in jobs) and bool(req.job.id or req.datum.job.id)
        wanted = list(_tails(ctx.store.data_dir, req, jobs, inputs, tails))
        # a job's last line without a newline is read once the job can write no more
        final = {j.id: j.terminal or not req.follow for j in jobs}
        ends: dict[str, int | None] = {}
        skip = 0
        if first and req.tail > 0:
            ends = {str(t.path): t.size() for t, _j, _i in wanted}
            skip = max(0, _count(req, wanted, final, ends, inputs, cutoff) - req.tail)
        first = False
        for tail, job, data in wanted:
            for line in tail.read(final[job.id], ends.get(str(tail.path))):
                if (msg := _shown(req, line, inputs[job.id], data, cutoff)) is None:
                    continue
                if skip:
                    skip -= 1
                    continue
                yield msg
        if not req.follow or terminal or not context.is_active() or ctx.stopping.is_set():
            return
        time.sleep(POLL)
