"""Executing a plan against pachd, in the order that keeps every intermediate state valid.

Called by `agent.sync` only. Phases: (1) create missing input repos; (2) every create and update
(drift reverts included) in DAG order inside ONE Pachyderm transaction, so the whole change is
accepted or rejected at once and starts one consistent set of jobs; (3) deletions, downstream
first. Input repos are never deleted. A failure in phase 2 applies nothing (the client deletes
the transaction); a failure between phases leaves a state the next run completes, because the
plan is recomputed from live state every time, and the error says what was applied before it.

The report always matches what the cluster did. When a call's answer is lost after it was sent
(RESOURCE_EXHAUSTED on an oversized response, UNAVAILABLE, DEADLINE_EXCEEDED: `outcome_unknown`),
the change may or may not have happened, so the cluster is re-observed instead of guessing: an
unfinished transaction is deleted first (it can then never commit later), then every pipeline
is checked for the annotations (`managed-by`, `source-commit`, `spec-hash`, `applied-version`)
this apply sent. A change that landed is reported applied (with a note); one that did not is
the error; if the cluster cannot be observed either, the outcome is reported unknown.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from python_pachyderm.proto.v2.pps import pps_pb2

from agent.cluster.client import Connection, map_error, outcome_unknown
from agent.cluster.data import commits_landed, start_commits, write_all
from agent.cluster.datamodel import DataWrite
from agent.cluster.model import LiveState
from agent.cluster.observe import observe, split_name
from agent.errors import PachsyncError, Transient

_RPC_FAILURES = (grpc.RpcError, ConnectionError)


@dataclass(frozen=True)
class RepoOp:
    name: str
    description: str = ""
    project: str = "default"


@dataclass(frozen=True)
class PipelineOp:
    """One create (update=False) or update of a pipeline; `request` is the spec dict to send."""

    name: str
    request: Mapping[str, Any]
    update: bool = False
    reprocess: bool = False
    file: str = ""


@dataclass(frozen=True)
class ApplyReport:
    repos_created: tuple[str, ...] = ()
    applied: tuple[str, ...] = ()  # pipelines created or updated
    deleted: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # answers that were lost, settled by re-observing the cluster
    data_written: tuple[str, ...] = ()  # repos that got a data commit (agent.cluster.data)

    def describe(self) -> str:
        """What was applied, in words: `1 input repo(s) created (raw); ...` or `nothing`."""
        parts = [f"{len(items)} {what} ({', '.join(items)})" for items, what in (
            (self.repos_created, "input repo(s) created"),
            (self.applied, "pipeline(s) created/updated"),
            (self.deleted, "pipeline(s) deleted"),
            (self.data_written, "repo(s) with data written")) if items]
        return "; ".join(parts) or "nothing"


def request_of(op: PipelineOp) -> Any:
    """The CreatePipelineRequest for one create/update, with update/reprocess set."""
    try:
        req = json_format.ParseDict(dict(op.request), pps_pb2.CreatePipelineRequest())
    except json_format.ParseError as exc:
        raise PachsyncError(f"{op.file or op.name}: spec does not fit Pachyderm's "
                            f"CreatePipelineRequest: {exc}",
                            hint="run `pachsync validate`") from exc
    req.update = op.update
    req.reprocess = op.reprocess and op.update
    return req


def apply_ops(conn: Connection, repos: Sequence[RepoOp], upserts: Sequence[PipelineOp],
              deletes: Sequence[str], data: Sequence[DataWrite] = ()) -> ApplyReport:
    """Run the three phases in order; raises agent.errors types (Transient/Conflict/...),
    whose message ends with what was applied before the failure, if anything.

    `upserts` must be in DAG order (upstream first), `deletes` (`name` or `project/name`)
    downstream first. `data` (declared in git): its commits start inside the pipelines'
    transaction (one commit set, so every job runs once, on the new data with the new specs),
    then their files are written and the commits finished (`agent.cluster.data`).
    """
    requests = [request_of(op) for op in upserts]  # all parsed before anything is sent
    done = ApplyReport()
    try:
        for repo in repos:
            note = _create_repo(conn, repo)
            done = _add(done, repos_created=(repo.name,), notes=(note,) if note else ())
        opened: list[Any] = []
        if requests or len(data) > 1:
            note = _transaction(conn, upserts, requests, data, opened)
            done = _add(done, applied=tuple(op.name for op in upserts),
                        notes=(note,) if note else ())
        elif data:
            opened = start_commits(conn, data)
        if data:
            done = _add(done, data_written=write_all(conn, data, opened))
        for qualified in deletes:
            note = _delete_pipeline(conn, qualified)
            done = _add(done, deleted=(qualified,), notes=(note,) if note else ())
    except PachsyncError as exc:
        if done.describe() != "nothing":
            exc.message += f" (applied before the failure: {done.describe()})"
            exc.args = (exc.message,)
        raise
    return done


def _add(done: ApplyReport, **more: tuple[str, ...]) -> ApplyReport:
    return ApplyReport(**{k: getattr(done, k) + more.get(k, ()) for k in
                          ("repos_created", "applied", "deleted", "notes", "data_written")})


# -- the three kinds of call, each settled by looking when its answer is lost -------------------
def _create_repo(conn: Connection, repo: RepoOp) -> str | None:
    what = f"creating input repo {repo.name!r}"
    return _call(conn, what, lambda: conn.client.create_repo(
        repo.name, description=repo.description or None, project_name=repo.project),
        lambda: any((r.name, r.project) == (repo.name, repo.project)
                    for r in observe(conn).repos))


def _delete_pipeline(conn: Connection, qualified: str) -> str | None:
    project, name = split_name(qualified)
    return _call(conn, f"deleting pipeline {qualified!r}",
                 lambda: conn.client.delete_pipeline(name, project_name=project),
                 lambda: not any((p.name, p.project) == (name, project)
                                 for p in observe(conn).pipelines))


def _transaction(conn: Connection, upserts: Sequence[PipelineOp], requests: list[Any],
                 data: Sequence[DataWrite] = (), opened: list[Any] | None = None) -> str | None:
    """Phase 2. An error while the transaction is being filled deletes it (nothing applied);
    an error on FinishTransaction is settled by looking (see the module docstring). The data
    commits it starts are appended to `opened`."""
    client = conn.client
    what = f"applying pipelines ({', '.join(op.name for op in upserts)}) in one transaction"
    if data:
        what += f" with data commits in {', '.join(w.repo for w in data)}"
    finishing, box = False, []
    opened = [] if opened is None else opened
    try:
        with client.transaction() as txn:
            box.append(txn)
            opened += start_commits(conn, data)
            for req in requests:
                client.create_pipeline_from_request(req)
            finishing = True  # the transaction's own __exit__ sends FinishTransaction next
    except _RPC_FAILURES as exc:
        if not (finishing and outcome_unknown(exc)):
            raise map_error(exc, what, conn.target) from exc
        return _settle(conn, what, exc, lambda: _transaction_landed(conn, box[0], upserts)
                       if upserts else commits_landed(conn, opened))
    return None


def _call(conn: Connection, what: str, call: Callable[[], Any],
          landed: Callable[[], bool]) -> str | None:
    """Run `call`; None when answered, a note when its lost answer was settled by looking."""
    try:
        call()
    except _RPC_FAILURES as exc:
        if not outcome_unknown(exc):
            raise map_error(exc, what, conn.target) from exc
        return _settle(conn, what, exc, landed)
    return None


def _settle(conn: Connection, what: str, exc: BaseException, landed: Callable[[], bool]) -> str:
    """The answer to `what` was lost: re-observe the cluster (`landed`) and say what it holds."""
    err = map_error(exc, what, conn.target)
    try:
        took_effect = landed()
    except PachsyncError as look:
        raise Transient(
            f"{what}: outcome unknown: the answer was lost ({err.message}) and the cluster "
            f"could not be re-observed ({look.message})",
            hint="the next sync re-observes the cluster and completes the change or repeats "
                 "it") from exc
    if not took_effect:
        err.message += "; re-observed the cluster: nothing of it was applied"
        err.args = (err.message,)
        raise err from exc
    return (f"{what}: the answer was lost ({_code(exc)}: {_details(exc)}); re-observed the "
            "cluster: the change was applied")


def _transaction_landed(conn: Connection, txn: Any, upserts: Sequence[PipelineOp]) -> bool:
    """Whether the transaction committed: first delete it (if unfinished it can then never
    commit behind our back; if finished, the delete just fails), then look for our annotations."""
    with contextlib.suppress(*_RPC_FAILURES):
        conn.client.delete_transaction(txn)
    live = observe(conn)
    holding = [op.name for op in upserts if _holds(live, op)]
    if len(holding) in (0, len(upserts)):
        return bool(holding)
    missing = [op.name for op in upserts if op.name not in holding]
    raise PachsyncError(
        f"only some pipelines of the transaction hold what it sent: {', '.join(holding)} do, "
        f"{', '.join(missing)} do not (changed concurrently by someone else?)",
        hint="the next sync plans again from the live state")


def _holds(live: LiveState, op: PipelineOp) -> bool:
    """The live pipeline carries every annotation this apply sent for it."""
    project, name = split_name(op.name)
    sent = _annotations(op.request)
    for p in live.pipelines:
        if (p.name, p.project) == (name, project):
            have = _annotations(p.spec)
            return bool(sent) and all(have.get(k) == v for k, v in sent.items())
    return False


def _annotations(doc: Mapping[str, Any]) -> dict[str, Any]:
    metadata = doc.get("metadata") or {}
    return dict(metadata.get("annotations") or {}) if isinstance(metadata, Mapping) else {}


def _code(exc: BaseException) -> str:
    code = exc.code() if isinstance(exc, grpc.RpcError) else None
    return code.name if code is not None else type(exc).__name__


def _details(exc: BaseException) -> str:
    return str(exc.details() if isinstance(exc, grpc.RpcError) else exc)
