"""One reconciliation: fetch -> load -> validate -> plan -> apply -> record (contract C4).

`sync_once(opts)` is called by the agent loop (`agent.runner`), the delivery and performance
helpers; `reconcile()` is the part after git, shared with the `plan`/`apply` commands when they
read a specs folder directly. Expected failures never raise: they come back as a SyncResult with
`result` ("invalid" for bad specs, "failed" otherwise), the `commit` they were about, and the
error type's `error_kind` and `disposition` (agent.errors), from which the runner decides to
stall (SpecInvalid, SignatureInvalid), back off (Transient and the rest) or report (partial).
Conflicts are per pipeline: a run applies everything else and says `partial` (error_kind
Conflict, `conflicts` counted, each conflict and skipped pipeline in `errors`).
Because the plan is always recomputed from live state, a run that failed half-way is completed
by the next one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.cluster.apply import ApplyReport, PipelineOp, RepoOp, apply_ops
from agent.cluster.client import Connection, connected
from agent.cluster.data import look_up, observe_data
from agent.cluster.model import LiveState
from agent.cluster.observe import histories, newest_jobs, observe, with_history, with_jobs
from agent.errors import Conflict, Disposition, PachsyncError, SpecInvalid
from agent.plan import Plan, Policy, plan
from agent.plan.data import DataPlan, plan_data
from agent.plan.diff import history_wanted
from agent.plan.health import StatusReport, pipeline_statuses
from agent.plan.model import ADOPT, CONFLICT, CREATE, DRIFT, PENDING, UNMANAGED
from agent.plan.normalize import qualify
from agent.plan.render import to_dict
from agent.source.fetch import Checkout, fetch, local_head
from agent.source.identity import (
    LOCAL_PREFIX,
    canonical_repo,
    canonical_source_id,
    local_path,
    make_source_id,
)
from agent.specs import DesiredState, RepoSpec, load_desired
from agent.specs.data import DATA_BRANCH, declared_bytes
from agent.util.annotations import ReprocessMode

# partial: applied, except what a conflict kept back (the conflicts and the pipelines reading them)
RESULTS = ("applied", "unchanged", "partial", "invalid", "failed", "planned")


@dataclass(frozen=True)
class SyncOptions:
    source: str
    branch: str = "main"
    specs_path: str = "specs"
    pachd: str | None = None
    prune: bool = False
    allow_empty: bool = False
    reprocess: ReprocessMode = ReprocessMode.AUTO
    self_heal: bool = True
    adopt: bool = False
    dry_run: bool = False
    cache_dir: Path | None = None
    source_id: str | None = None
    verify: Callable[[Path, str], None] | None = None


@dataclass(frozen=True)
class SyncResult:
    commit: str | None
    result: str  # applied | unchanged | invalid | failed (| planned: dry run with changes)
    started_at: float
    duration_s: float
    actions: dict[str, str]
    errors: tuple[str, ...]
    error_kind: str | None
    drift_detected: int
    out_of_sync: int
    rpc_count: int
    plan: dict[str, Any] = field(default_factory=dict)  # the plan as JSON data (render.to_dict)
    conflicts: int = 0  # pipelines in conflict, skipped by this run (result "partial")
    # The validated desired state and policy of this run, when it got that far: the runner
    # judges sync and health against it after the run (`refresh_status`).
    prepared: Prepared | None = field(default=None, repr=False, compare=False)
    # What the runner does next (agent.errors.Disposition): from the error's type; REPORT for a
    # partial run; None when nothing failed.
    disposition: Disposition | None = None


@dataclass(frozen=True)
class Outcome:
    """What `reconcile` did: the plan it made and, unless dry run, what it applied."""

    plan: Plan
    applied: ApplyReport | None
    data: DataPlan | None = None  # data declared in git (agent.plan.data), when planned


def source_id_for(source: str, branch: str, specs_path: str) -> str:
    """The default `pachsync.io/managed-by` value: the canonical identity of the repository
    (agent.source.identity: one string for every spelling of it, never credentials), branch and
    specs folder. A local path is made absolute with symlinks resolved first, as before."""
    return make_source_id(canonical_repo(_resolved(source)), branch, specs_path)


def _resolved(source: str) -> str:
    """A local path (or file:// URL) with `~` expanded and symlinks resolved; others as given."""
    path = local_path(source)
    return source if path is None else str(Path(path).expanduser().resolve())


def observe_for(conn: Connection, desired: DesiredState) -> LiveState:
    """Observe (2 RPCs), plus the history of each pipeline git names whose current version
    lacks our annotations (one RPC each: was it ours, updated by hand, or nobody's?)."""
    live = observe(conn)
    names = history_wanted(desired, live)
    return with_history(live, histories(conn, names)) if names else live


def make_plan(conn: Connection, desired: DesiredState, policy: Policy) -> tuple[Plan, LiveState]:
    """Observe (`observe_for`), plan; fetch datum counts only for pipelines a reprocess would
    re-run (or would, once adopted)."""
    live = observe_for(conn, desired)
    result = plan(desired, live, policy)
    names = [c.name for c in result.pipelines
             if c.reprocess and (c.will_apply or c.action == ADOPT)]
    if names:
        live = with_jobs(live, newest_jobs(conn, names))
        result = plan(desired, live, policy)
    return result, live


def make_data_plan(conn: Connection, desired: DesiredState, policy: Policy,
                   live: LiveState) -> DataPlan:
    """The plan of data declared in git: one ListCommit per repo with data (plus a DiffFile
    when someone committed after us); before a write, one GlobFile per declared place to show
    what is replaced and which files we did not write (then plan again). Nothing when no repo
    declares data."""
    declared = [r for r in desired.repos if r.data is not None]
    if not declared:
        return DataPlan()
    ours = canonical_source_id(policy.source_id)
    existing = frozenset((r.project, r.name) for r in live.repos)
    found = observe_data(conn, [(r.name, r.project, DATA_BRANCH) for r in declared], existing,
                         lambda source: canonical_source_id(source) == ours)
    result = plan_data(desired, found, policy)
    if not result.has_changes:
        return result
    for r in declared:
        key = (r.project, r.name)
        if any(p.repo == r.name and p.project == r.project and p.write for p in result.repos):
            found[key] = look_up(conn, found[key], _places(r))
    return plan_data(desired, found, policy)


def _places(repo: RepoSpec) -> list[str]:
    """Where a repo's declared data goes: the folders split files fill, and the other files."""
    if repo.data is None:
        return []
    dirs = list(repo.data.dirs)
    return dirs + [f.path for f in repo.data.files if not any(f.path.startswith(d) for d in dirs)]


def execute(conn: Connection, result: Plan, dry_run: bool = False,
            data: DataPlan | None = None) -> Outcome:
    """Apply a plan (unless dry run): what it will apply. Conflicts, and the changes that read
    them, are left out by the planner (`will_apply` false), so they never stop the rest.
    Declared data is written with the pipelines (`apply_ops`: one commit set)."""
    if dry_run:
        return Outcome(result, None, data)
    repos = [RepoOp(r.name, r.description, r.project) for r in result.repos_to_create]
    upserts = [PipelineOp(c.name, c.request or {}, update=c.action != CREATE,
                          reprocess=c.reprocess, file=c.file) for c in result.to_apply]
    deletes = [c.name for c in result.to_delete]
    writes = data.writes if data is not None else ()
    return Outcome(result, apply_ops(conn, repos, upserts, deletes, writes), data)


def reconcile(conn: Connection, desired: DesiredState, policy: Policy, dry_run: bool = False
              ) -> Outcome:
    """Plan against live state (pipelines and declared data), then execute the plan."""
    result, live = make_plan(conn, desired, policy)
    data = make_data_plan(conn, desired, policy, live)
    return execute(conn, result, dry_run, data)


def out_of_sync(p: Plan, applied: bool) -> int:
    """Pipelines that still differ from git after this run."""
    pending = [c for c in p.pipelines if c.action in PENDING]
    return len([c for c in pending if not (applied and c.will_apply)])


def _actions(p: Plan) -> dict[str, str]:
    return {c.name: c.label for c in p.pipelines if c.action != UNMANAGED}


def run_result(outcome: Outcome, dry_run: bool) -> str:
    """applied | unchanged | partial (conflicts skipped, the rest applied) | planned (dry run)."""
    data_pending = outcome.data is not None and outcome.data.has_changes
    if outcome.applied is None:
        return "planned" if (dry_run and (outcome.plan.has_changes or data_pending)) \
            else "unchanged"
    if outcome.plan.skipped:
        return "partial"
    a = outcome.applied
    return "applied" if (a.repos_created or a.applied or a.deleted or a.data_written) \
        else "unchanged"


@dataclass(frozen=True)
class Prepared:
    """The validated desired state of one commit and the policy to apply it with."""

    desired: DesiredState
    policy: Policy
    commit: str


# Valid desired states by (checkout dir, commit, specs path): a commit never changes, so a poll
# that finds the same head skips parsing and validating every spec again.
_DESIRED_CACHE: dict[tuple[str, str, str], DesiredState] = {}
_DESIRED_CACHE_MAX = 16
_DESIRED_CACHE_DATA = 64 * 2**20  # bytes of declared data (agent.specs.data) kept in the cache


def _load_cached(root: Path, commit: str, specs_path: str) -> DesiredState:
    key = (str(root), commit, specs_path)
    cached = _DESIRED_CACHE.get(key)
    if cached is None:
        cached = load_desired(root / specs_path, root=root)
        size = declared_bytes(cached.repos)
        while _DESIRED_CACHE and (len(_DESIRED_CACHE) >= _DESIRED_CACHE_MAX or size + sum(
                declared_bytes(d.repos) for d in _DESIRED_CACHE.values()) > _DESIRED_CACHE_DATA):
            _DESIRED_CACHE.pop(next(iter(_DESIRED_CACHE)))
        _DESIRED_CACHE[key] = cached
    return cached


def prepare(opts: SyncOptions) -> Prepared:
    """fetch -> verify -> load -> validate. Raises Transient, SpecInvalid, PachsyncError."""
    return prepare_checkout(opts, fetch(opts.source, opts.branch, opts.cache_dir))


def prepare_checkout(opts: SyncOptions, checkout: Checkout) -> Prepared:
    """verify -> load -> validate one fetched commit. Raises SpecInvalid, PachsyncError."""
    if opts.verify is not None:
        opts.verify(checkout.path, checkout.commit)
    desired = _load_cached(checkout.path, checkout.commit, opts.specs_path)
    source_id = canonical_source_id(opts.source_id) if opts.source_id else \
        source_id_for(opts.source, opts.branch, opts.specs_path)
    policy = Policy(source_id=source_id, commit=checkout.commit, prune=opts.prune,
                    allow_empty=opts.allow_empty, reprocess=opts.reprocess,
                    self_heal=opts.self_heal, adopt=opts.adopt)
    return Prepared(desired, policy, checkout.commit)


def prepare_local(specs_dir: Path, source_id: str | None, **policy: Any) -> Prepared:
    """Like `prepare` for a specs folder on disk (no fetch): `plan --specs DIR`, `demo`."""
    desired = load_desired(specs_dir)
    commit = local_head(specs_dir) or ""
    sid = canonical_source_id(source_id or f"{LOCAL_PREFIX}{specs_dir.resolve()}")
    return Prepared(desired, Policy(source_id=sid, commit=commit, **policy), commit)


# A partial run: conflicts kept something back, the rest was applied. Reported, not retried.
_PARTIAL = (Conflict.kind, Disposition.REPORT)
# An unexpected exception (a bug below): recorded like a plain PachsyncError, retried.
_BUG = (PachsyncError.kind, PachsyncError.disposition)


def _why(exc: PachsyncError) -> tuple[str, Disposition]:
    """What a run that ended with `exc` records: its type's kind and disposition."""
    return exc.kind, exc.disposition


def sync_once(opts: SyncOptions) -> SyncResult:
    """fetch -> load -> validate -> plan -> apply -> record; never raises for expected failures."""
    started, t0 = time.time(), time.perf_counter()
    commit: str | None = None
    conn: Connection | None = None
    planned: Plan | None = None  # known even when applying it fails
    prepared: Prepared | None = None
    try:
        checkout = fetch(opts.source, opts.branch, opts.cache_dir)
        commit = checkout.commit
        prepared = prepare_checkout(opts, checkout)
        with connected(opts.pachd) as conn:  # closed before the result is recorded
            planned, live = make_plan(conn, prepared.desired, prepared.policy)
            data = make_data_plan(conn, prepared.desired, prepared.policy, live)
            outcome = execute(conn, planned, opts.dry_run, data)
    except SpecInvalid as exc:
        return _record(started, t0, commit, conn, None, "invalid",
                       tuple(e.format() for e in exc.errors), _why(exc))
    except PachsyncError as exc:
        text = exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
        failed = Outcome(planned, None) if planned is not None else None
        return _record(started, t0, commit, conn, failed, "failed", (text,), _why(exc),
                       prepared)
    except Exception as exc:  # noqa: BLE001 - the loop must survive bugs; report them loudly
        failed = Outcome(planned, None) if planned is not None else None
        return _record(started, t0, commit, conn, failed, "failed",
                       (f"unexpected error: {type(exc).__name__}: {exc}",),
                       _BUG, prepared)
    result = run_result(outcome, opts.dry_run)
    return _record(started, t0, commit, conn, outcome, result, _skipped_texts(outcome.plan),
                   _PARTIAL if result == "partial" else None, prepared)


def _skipped_texts(p: Plan) -> tuple[str, ...]:
    """One line per conflict and per change it kept back, for the log and /status."""
    return p.conflicts + tuple(f"{c.name}: {c.action} skipped: it reads "
                               f"{', '.join(c.blocked_by)}, which is in conflict or skipped"
                               for c in p.pipelines if c.blocked_by)


def _record(started: float, t0: float, commit: str | None,
            conn: Connection | None, outcome: Outcome | None, result: str,
            errors: tuple[str, ...], why: tuple[str, Disposition] | None,
            prepared: Prepared | None = None) -> SyncResult:
    """The SyncResult of a run; `why`: the kind and disposition of the error type it ended
    with (`_why`), None when nothing failed."""
    p = outcome.plan if outcome else None
    # Answers lost during apply and settled by re-observing the cluster are reported too.
    notes = outcome.applied.notes if (outcome and outcome.applied) else ()
    return SyncResult(
        commit=commit, result=result, started_at=started, duration_s=time.perf_counter() - t0,
        actions=_actions(p) if p else {},
        errors=errors + notes + (p.warnings if p else ()) + _data_warnings(outcome),
        error_kind=why[0] if why else None,
        disposition=why[1] if why else None,
        drift_detected=sum(1 for c in p.pipelines if c.action == DRIFT) if p else 0,
        out_of_sync=out_of_sync(p, outcome.applied is not None) if (p and outcome) else 0,
        rpc_count=conn.rpc_count if conn else 0,
        plan=to_dict(p, outcome.data if outcome else None) if p else {},
        conflicts=sum(1 for c in p.pipelines if c.action == CONFLICT) if p else 0,
        prepared=prepared,
    )


def _data_warnings(outcome: Outcome | None) -> tuple[str, ...]:
    return outcome.data.warnings if outcome is not None and outcome.data is not None else ()


def status_report(conn: Connection, prepared: Prepared | None,
                  live: LiveState | None = None) -> StatusReport:
    """observe -> plan (when specs are known) -> newest job of every pipeline -> sync and health
    (`agent.plan.health`): what `pachsync status`, the agent's /status and /metrics show. Costs
    2 RPCs (none if `live` is given) plus one ListJob per live pipeline."""
    if live is None:
        live = observe_for(conn, prepared.desired) if prepared is not None else observe(conn)
    planned = plan(prepared.desired, live, prepared.policy) if prepared is not None else None
    live = with_jobs(live, newest_jobs(conn, [qualify(p.project, p.name) for p in live.pipelines]))
    return StatusReport(pipeline_statuses(planned, live),
                        source_id=prepared.policy.source_id if prepared is not None else None,
                        commit=prepared.commit if prepared is not None else None)


def refresh_status(opts: SyncOptions, prepared: Prepared | None) -> StatusReport:
    """`status_report` on a connection of its own (the runner calls it after every run, so a
    sync's own `rpc_count` stays what the sync cost)."""
    with connected(opts.pachd) as conn:
        return status_report(conn, prepared)
