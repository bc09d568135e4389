"""GetLogs: stream datum logs as Pachyderm `LogMessage`s, by pipeline, job or datum; follow.

Called by the pps servicer. Logs are the files `localpachd.logs` keeps per datum; with `follow`
the stream keeps polling for new lines until the job is terminal (job scope) or the client
goes away (pipeline scope), like `pachctl logs -f`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd import errors, logs
from localpachd.pps import convert, db, pipelines
from localpachd.store import Tx

POLL = 0.2


def _scope(tx: Tx, req: Any) -> tuple[str, str, list[db.JobRow]]:
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


def _inputs(tx: Tx, job: db.JobRow) -> dict[str, list[dict[str, Any]]]:
    return {d.id: d.inputs for d in db.datums_of(tx, job.project, job.pipeline, job.id)}


def _wanted(inputs: list[dict[str, Any]], filters: list[str]) -> bool:
    if not filters:
        return True
    return all(any(f in (i["path"], i["hash"], i["path"].rstrip("/")) for i in inputs)
               for f in filters)  # fmt: skip


def _message(line: logs.LogLine, inputs: list[dict[str, Any]]) -> pps_pb2.LogMessage:
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


def get_logs(ctx: Any, req: Any, context: Any) -> Iterator[pps_pb2.LogMessage]:
    data_dir = ctx.store.data_dir
    datum_id = req.datum.id
    filters = list(req.data_filters)
    tails: dict[str, logs.Tail] = {}
    pending: list[pps_pb2.LogMessage] = []
    first = True
    ctx.pps_engine.sync()  # once: later polls only read (the engine keeps job rows current)
    while True:
        with ctx.store.read() as tx:
            _project, _name, jobs = _scope(tx, req)
            inputs = {j.id: _inputs(tx, j) for j in jobs}
            terminal = all(j.terminal for j in jobs) and bool(req.job.id or req.datum.job.id)
        for job in jobs:
            for path in logs.job_files(data_dir, job.project, job.pipeline, job.id):
                did = path.stem
                if datum_id and did != datum_id:
                    continue
                if not _wanted(inputs[job.id].get(did, []), filters):
                    continue
                tail = tails.setdefault(
                    str(path), logs.Tail(path, job.project, job.pipeline, job.id)
                )
                for line in tail.read():
                    pending.append(_message(line, inputs[job.id].get(did, [])))
        if first and req.tail > 0:
            pending = pending[-req.tail :]
        first = False
        yield from pending
        pending = []
        if not req.follow or terminal or not context.is_active() or ctx.stopping.is_set():
            return
        time.sleep(POLL)
