"""Reading what the pipelines produced, for the report: metrics, select's outputs, job history.

Called by `agent.report.collect` (so by `pachsync report` and the demo). Everything here takes a
python-pachyderm client (`Connection.client` or the test fixture's) and returns plain frozen
values; grpc failures become agent errors through `rpc_errors`. Costs: one GetFileTAR for all
metric files (a glob), one ListFile and two GetFiles for select, one ListJob per pipeline, one or
two commit look-ups.
"""

from __future__ import annotations

import json
import math
import re
import tarfile
from dataclasses import dataclass
from typing import Any

import grpc

from agent.cluster.address import PachdTarget
from agent.cluster.client import map_error, rpc_errors
from agent.cluster.model import LivePipeline
from agent.cluster.observe import live_pipeline
from agent.errors import PachsyncError, UsageError

METRIC_SUFFIX = "_metric.txt"
_COMMIT_ID = re.compile(r"^[0-9a-f]{32}$")
_ANCESTRY = re.compile(r"^(?P<branch>[A-Za-z0-9_.-]*)(?P<op>[\^~])(?P<n>\d*)$")


@dataclass(frozen=True)
class CommitRef:
    """An output commit: its id and whether it is finished (an open one is still being written)."""

    id: str
    finished: bool
    started: float | None = None
    error: str = ""  # set when the job writing it failed: its content is not to be trusted


@dataclass(frozen=True)
class JobRecord:
    """One job of a pipeline with its datum counts and times (unix seconds, None when unset)."""

    id: str
    state: str  # without the JOB_ prefix, e.g. "SUCCESS"
    processed: int
    skipped: int
    failed: int
    recovered: int
    total: int
    pipeline_version: int
    created: float | None
    started: float | None
    finished: float | None


@dataclass(frozen=True)
class SelectOutputs:
    """select's selected.json (parsed) and leaderboard.csv (text); None when a file is absent."""

    commit: str
    selected: dict[str, Any] | None
    leaderboard_csv: str | None


def _seconds(msg: Any, name: str) -> float | None:
    if not msg.HasField(name):
        return None
    ts = getattr(msg, name)
    return float(ts.seconds) + float(ts.nanos) / 1e9


def _not_found(exc: grpc.RpcError) -> bool:
    """Pachyderm says "repo X not found" / "branch X not found in repo Y" (code varies)."""
    return "not found" in str(exc.details() or "").lower()


def _ref(info: Any) -> CommitRef:
    return CommitRef(info.commit.id, info.HasField("finished"), _seconds(info, "started"),
                     str(info.error))  # fmt: skip


def list_commits(client: Any, repo: str, limit: int = 50,
                 target: PachdTarget | None = None) -> tuple[CommitRef, ...]:  # fmt: skip
    """The newest commits of a repo (pipeline-made ones too), newest first."""
    with rpc_errors(f"listing commits of repo {repo!r}", target):
        # all=True is what real pachd honours; origin_kind UNKNOWN (no filter) is for servers
        # that only look at the kind, since the client's default (USER) hides pipeline commits.
        infos = list(client.list_commit(repo, number=limit, all=True, origin_kind=0))
    refs = [_ref(i) for i in infos]
    return tuple(sorted(refs, key=lambda r: r.started or 0.0, reverse=True))


def head_commit(client: Any, repo: str, branch: str = "master",
                target: PachdTarget | None = None) -> CommitRef | None:  # fmt: skip
    """The commit `branch` points at, or None when the repo or branch does not exist."""
    try:
        info = next(iter(client.inspect_commit((repo, branch))))
    except grpc.RpcError as exc:
        if _not_found(exc):
            return None
        raise map_error(exc, f"inspecting {repo}@{branch}", target) from exc
    return _ref(info)


def resolve_commit(client: Any, repo: str, ref: str, target: PachdTarget | None = None) -> str:
    """A commit id of `repo` from an id, `^`/`~N` (N commits before the head), or `branch~N`."""
    if _COMMIT_ID.match(ref):
        return ref
    match = _ANCESTRY.match(ref)
    if not match:
        raise UsageError(
            f"cannot resolve commit {ref!r} of repo {repo!r}",
            hint="give a 32-hex commit id, or ~N for N commits before the newest",
        )
    back = int(match["n"] or 1)
    commits = list_commits(client, repo, limit=back + 1, target=target)
    if len(commits) <= back:
        raise UsageError(f"repo {repo!r} has {len(commits)} commit(s); {ref!r} goes back {back}",
                         hint="list them with `pachctl list commit " + repo + "`")  # fmt: skip
    return commits[back].id


def _read(client: Any, repo: str, commit: str, path: str, target: PachdTarget | None) -> bytes:
    with rpc_errors(f"reading {repo}@{commit}:{path}", target):
        return bytes(client.get_file((repo, commit), path).read())


def _parse_metric(text: bytes) -> float | None:
    try:
        value = float(text.decode("utf-8", "replace").strip())
    except ValueError:
        return None  # not a number: left out of the grid rather than failing the report
    return value if math.isfinite(value) else None


def _metrics_by_tar(client: Any, repo: str, commit: str,
                    target: PachdTarget | None) -> dict[str, float]:  # fmt: skip
    """All top-level metric files in one GetFileTAR over a glob (what pachctl does for globs)."""
    out: dict[str, float] = {}
    with rpc_errors(f"reading {repo}@{commit}:/*{METRIC_SUFFIX}", target):
        tar = client.get_file_tar((repo, commit), f"/*{METRIC_SUFFIX}")
        for member in tar:
            name = member.name.rsplit("/", 1)[-1]
            data = tar.extractfile(member) if member.isfile() else None
            value = _parse_metric(data.read()) if data is not None else None
            if value is not None and name.endswith(METRIC_SUFFIX):
                out[name] = value
    return out


def read_metrics(client: Any, repo: str = "test", commit: str = "master",
                 target: PachdTarget | None = None) -> dict[str, float]:  # fmt: skip
    """{file name: accuracy} for every top-level `*_metric.txt` of repo@commit.

    One GetFileTAR for all of them; when the server refuses a glob there (or nothing matches,
    which some servers report as an error), one ListFile plus one GetFile per metric file.
    """
    try:
        found = _metrics_by_tar(client, repo, commit, target)
    except (PachsyncError, tarfile.TarError):
        found = {}
    if found:
        return found
    with rpc_errors(f"listing {repo}@{commit}", target):
        names = [f.file.path.lstrip("/") for f in client.list_file((repo, commit), "/")]
    out: dict[str, float] = {}
    for name in sorted(n for n in names if n.endswith(METRIC_SUFFIX)):
        value = _parse_metric(_read(client, repo, commit, "/" + name, target))
        if value is not None:
            out[name] = value
    return out


def read_select(client: Any, repo: str = "select", commit: str = "master",
                target: PachdTarget | None = None) -> SelectOutputs:  # fmt: skip
    """select's selected.json and leaderboard.csv at repo@commit (None for a missing file)."""
    with rpc_errors(f"listing {repo}@{commit}", target):
        names = {f.file.path.lstrip("/") for f in client.list_file((repo, commit), "/")}
    selected = board = None
    if "selected.json" in names:
        raw = _read(client, repo, commit, "/selected.json", target)
        try:
            selected = json.loads(raw)
        except ValueError as exc:
            raise PachsyncError(f"{repo}@{commit}:/selected.json is not JSON: {exc}") from exc
    if "leaderboard.csv" in names:
        board = _read(client, repo, commit, "/leaderboard.csv", target).decode("utf-8", "replace")
    return SelectOutputs(commit, selected, board)


def _job(info: Any) -> JobRecord:
    state = info.DESCRIPTOR.fields_by_name["state"].enum_type.values_by_number.get(info.state)
    name = state.name if state is not None else str(info.state)
    return JobRecord(info.job.id, name.removeprefix("JOB_"), int(info.data_processed),
                     int(info.data_skipped), int(info.data_failed), int(info.data_recovered),
                     int(info.data_total), int(info.pipeline_version), _seconds(info, "created"),
                     _seconds(info, "started"), _seconds(info, "finished"))  # fmt: skip


def recent_jobs(client: Any, pipeline: str, limit: int = 5, project: str = "default",
                target: PachdTarget | None = None) -> tuple[JobRecord, ...]:  # fmt: skip
    """The newest `limit` jobs of a pipeline over all its versions, newest first."""
    with rpc_errors(f"listing jobs of pipeline {pipeline!r}", target):
        # Pachyderm streams jobs newest first; `number` keeps a long history off the wire.
        infos = list(client.list_job(pipeline_name=pipeline, history=-1, project_name=project,
                                     number=limit))  # fmt: skip
    jobs = sorted((_job(i) for i in infos),
                  key=lambda j: (j.created or 0.0, j.pipeline_version), reverse=True)  # fmt: skip
    return tuple(jobs[:limit])


def live_pipelines(client: Any, target: PachdTarget | None = None) -> tuple[LivePipeline, ...]:
    """Every pipeline with its stored spec (one ListPipeline stream), as `observe` reads them."""
    with rpc_errors("listing pipelines", target):
        return tuple(live_pipeline(i) for i in client.list_pipeline(details=True))
