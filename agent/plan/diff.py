"""PURE planner: `plan(desired, live, policy) -> Plan`. No I/O, no grpc, no git.

Called by `agent.sync` (and so by `plan`/`apply`/the agent loop) with the DesiredState loaded
from git (`agent.specs`) and the LiveState observed by `agent.cluster.observe`. Both sides are
normalised with Pachyderm's defaults (`agent.normalize`) so only real differences count.

Decisions, per desired pipeline: create (absent), conflict (the name belongs to another source
or a plain repo), unchanged (normalised specs equal), drift (updated since we applied it: a later
version than the one we recorded, or a current version without our annotations after an earlier
one carried this source's `managed-by`, as `pachctl update pipeline -f` leaves it), adopt (no
version was ever managed by anyone: taken over only with `Policy.adopt` or the spec annotation
`pachsync.io/adopt: "true"`) or update. Owners are compared as source identities
(`agent.source.identity.same_source`), so every spelling of our repository, old ones included,
is us. Reprocess follows the policy (`auto` = exactly when the normalised transform changed),
overridden per spec by the annotation `pachsync.io/reprocess`.

Conflicts are per pipeline: a conflict is skipped, and so is every change that reads it (directly
or through another skipped change: `blocked_by`); everything else is planned as usual. Live
pipelines missing from git are deleted only when they carry this source's `managed-by`,
`--prune` is on, and the desired state is not empty (unless `--allow-empty`).
"""

from __future__ import annotations

import copy
import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from graphlib import CycleError, TopologicalSorter
from typing import TYPE_CHECKING, Any

from agent.cluster.model import LivePipeline, LiveState, PastVersion
from agent.plan.model import (
    ADOPT,
    CONFLICT,
    CREATE,
    DELETE,
    DRIFT,
    ORPHAN,
    UNCHANGED,
    UNMANAGED,
    UPDATE,
    FieldDiff,
    PipelineChange,
    Plan,
    Policy,
    RepoChange,
)
from agent.plan.normalize import (
    ANN_ADOPT,
    ANN_APPLIED_VERSION,
    ANN_MANAGED_BY,
    ANN_REPROCESS,
    ANN_SOURCE_COMMIT,
    ANN_SPEC_HASH,
    annotations_of,
    normalize_spec,
    project_of,
    qualify,
    spec_hash,
)
from agent.source.identity import same_source
from agent.util.annotations import ReprocessMode, adopt_requested, reprocess_mode
from agent.util.inputs import walk_pfs

if TYPE_CHECKING:
    from agent.specs import DesiredState, PipelineSpec

def diff_values(before: Any, after: Any, path: str = "") -> list[FieldDiff]:
    """Leaf-level differences between two normalised values (dicts recurse, lists by index)."""
    if before == after:
        return []
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        out: list[FieldDiff] = []
        for key in sorted(set(before) | set(after), key=str):
            sub = f"{path}.{key}" if path else str(key)
            out.extend(diff_values(before.get(key), after.get(key), sub))
        return out
    if (isinstance(before, list) and isinstance(after, list) and len(before) == len(after)
            and all(isinstance(v, Mapping) for v in before + after)):
        return [d for i, (b, a) in enumerate(zip(before, after, strict=True))
                for d in diff_values(b, a, f"{path}[{i}]")]
    return [FieldDiff(path or "(spec)", before, after)]


def build_request(ps: PipelineSpec, policy: Policy, digest: str, version: int = 1
                  ) -> dict[str, Any]:
    """The spec to send: git's document plus the annotations that record what we applied
    (`version` = the pipeline version this create/update will produce)."""
    doc = copy.deepcopy(dict(ps.spec))
    pipeline = dict(doc.get("pipeline") or {})
    pipeline["name"] = ps.name
    doc["pipeline"] = pipeline
    metadata = dict(doc.get("metadata") or {})
    annotations = dict(metadata.get("annotations") or {})
    annotations[ANN_MANAGED_BY] = policy.source_id
    annotations[ANN_SOURCE_COMMIT] = policy.commit
    annotations[ANN_SPEC_HASH] = digest
    annotations[ANN_APPLIED_VERSION] = str(version)
    metadata["annotations"] = annotations
    doc["metadata"] = metadata
    return doc


def _reprocess(ps: PipelineSpec, policy: Policy, diffs: Sequence[FieldDiff]) -> tuple[bool, str]:
    # validate refuses a spec whose annotation names no mode, so None is only a bypass of it
    asked = reprocess_mode(annotations_of(ps.spec).get(ANN_REPROCESS, ""))
    mode = asked or policy.reprocess
    origin = "policy" if asked is None else f"annotation {ANN_REPROCESS}"
    if mode == ReprocessMode.ALWAYS:
        return True, f"reprocess=always ({origin})"
    if mode == ReprocessMode.NEVER:
        return False, f"reprocess=never ({origin})"
    changed = [d.path for d in diffs if d.path == "transform" or d.path.startswith("transform.")]
    if changed:
        return True, "transform changed: " + ", ".join(changed)
    return False, "transform unchanged: existing outputs stay valid"


def _conflict_reason(name: str, lp: LivePipeline | None, policy: Policy,
                     past: PastVersion | None = None) -> str:
    if lp is None:
        return (f"a repo named {name!r} already exists and is not a pipeline's output; "
                "rename the pipeline or delete that repo")
    if past is not None:
        owner = past.annotations.get(ANN_MANAGED_BY, "")
        return (f"pipeline {name!r} was managed by another source ({owner!r}, we are "
                f"{policy.source_id!r}) until version {past.version}, then updated by hand "
                "without annotations; only one source may own a pipeline")
    owner = annotations_of(lp.spec).get(ANN_MANAGED_BY, "")
    return (f"pipeline {name!r} is managed by another source ({owner!r}, we are "
            f"{policy.source_id!r}); only one source may own a pipeline")


def last_owned(lp: LivePipeline) -> PastVersion | None:
    """The newest earlier version that carried a `managed-by` (None: never managed, or the
    history was not looked up)."""
    return next((v for v in lp.history or () if v.annotations.get(ANN_MANAGED_BY)), None)


def history_wanted(desired: DesiredState, live: LiveState) -> list[str]:
    """Pipelines git names whose current version lacks our `managed-by` and whose history is
    not known yet: was an earlier version ours (drift) or nobody's (adopt)?"""
    wanted = {qualify(project_of(ps.spec), ps.name) for ps in desired.pipelines}
    return [q for p in live.pipelines if (q := qualify(p.project, p.name)) in wanted
            and p.history is None and not annotations_of(p.spec).get(ANN_MANAGED_BY)]


# Memo of git's normalised specs by PipelineSpec identity: agent.sync reuses one DesiredState
# per commit, so a poll that finds nothing new does not normalise 200 specs again. The entry
# keeps the spec object alive, so an id can never be reused while its entry exists.
_DESIRED_MEMO: dict[int, tuple[object, dict[str, Any], str]] = {}
_DESIRED_MEMO_MAX = 4096


def _normalized_desired(ps: PipelineSpec) -> tuple[dict[str, Any], str]:
    hit = _DESIRED_MEMO.get(id(ps))
    if hit is not None and hit[0] is ps:
        return hit[1], hit[2]
    desired = normalize_spec(ps.spec)
    digest = spec_hash(desired)
    if len(_DESIRED_MEMO) >= _DESIRED_MEMO_MAX:
        _DESIRED_MEMO.clear()
    _DESIRED_MEMO[id(ps)] = (ps, desired, digest)
    return desired, digest


def _desired_change(ps: PipelineSpec, live: LiveState, policy: Policy,
                    pipelines: Mapping[str, LivePipeline], repo_names: frozenset[str],
                    ) -> PipelineChange:
    desired, digest = _normalized_desired(ps)
    project = project_of(ps.spec)
    qname = qualify(project, ps.name)
    base = PipelineChange(name=qname, action=CREATE, file=ps.file, project=project,
                          inputs=tuple(qualify(project, i) for i in ps.inputs))
    lp = pipelines.get(qname)
    if lp is None:
        if qname in repo_names:
            return replace(base, action=CONFLICT, reason=_conflict_reason(ps.name, None, policy))
        return replace(base, reason="not in the cluster", will_apply=True,
                       diffs=tuple(diff_values(None, desired)),
                       request=build_request(ps, policy, digest, 1))
    ann = annotations_of(lp.spec)
    base = replace(base, managed_by=ann.get(ANN_MANAGED_BY, ""),
                   source_commit=ann.get(ANN_SOURCE_COMMIT, ""))
    if not ann.get(ANN_MANAGED_BY):
        return _unannotated(ps, live, policy, lp, base)
    if not same_source(ann[ANN_MANAGED_BY], policy.source_id):
        return replace(base, action=CONFLICT, reason=_conflict_reason(ps.name, lp, policy))
    current = normalize_spec(lp.spec, lp.project)
    live_digest = spec_hash(current)
    if live_digest == digest:
        return replace(base, action=UNCHANGED, reason="equal to git")
    diffs = tuple(diff_values(current, desired))
    touched = touched_by_others(ann, lp, live_digest)
    if not touched and ann.get(ANN_SPEC_HASH) == digest:
        # We applied exactly this spec and nobody updated the pipeline since: what differs is
        # a default the server fills in that the normaliser does not know. Never loop on it.
        paths = ", ".join(d.path for d in diffs)
        return replace(base, action=UNCHANGED, diffs=diffs,
                       reason=f"equal to git as applied; the server stores {paths} differently")
    reprocess, why = _reprocess(ps, policy, diffs)
    job = live.jobs.get(qname)
    change = replace(base, action=UPDATE, reason="git changed", will_apply=True, diffs=diffs,
                     reprocess=reprocess, reprocess_reason=why,
                     request=build_request(ps, policy, digest, lp.version + 1),
                     datums=job.total if (reprocess and job is not None) else None)
    if touched:
        tail = "; reverting to git" if policy.self_heal else "; self-heal off, reported only"
        since = base.source_commit[:12] or "?"
        return replace(change, action=DRIFT, will_apply=policy.self_heal,
                       reason=f"changed outside git since commit {since}{tail}")
    return change


def _unannotated(ps: PipelineSpec, live: LiveState, policy: Policy, lp: LivePipeline,
                 base: PipelineChange) -> PipelineChange:
    """A live pipeline git names whose current version carries no `managed-by`: drift if an
    earlier version was ours, a conflict if it was another source's, else adopt."""
    past = last_owned(lp)
    if past is not None and not same_source(past.annotations[ANN_MANAGED_BY], policy.source_id):
        return replace(base, action=CONFLICT, managed_by=past.annotations[ANN_MANAGED_BY],
                       reason=_conflict_reason(ps.name, lp, policy, past))
    desired, digest = _normalized_desired(ps)
    diffs = tuple(diff_values(normalize_spec(lp.spec, lp.project), desired))
    reprocess, why = _reprocess(ps, policy, diffs)
    job = live.jobs.get(base.name)
    change = replace(base, diffs=diffs, reprocess=reprocess, reprocess_reason=why,
                     request=build_request(ps, policy, digest, lp.version + 1),
                     datums=job.total if (reprocess and job is not None) else None)
    what = "; its spec equals git" if not diffs else ""
    if past is not None:
        since = past.annotations.get(ANN_SOURCE_COMMIT, "")[:12] or "?"
        tail = "reverting to git" if policy.self_heal else "self-heal off, reported only"
        return replace(change, action=DRIFT, will_apply=policy.self_heal,
                       managed_by=past.annotations[ANN_MANAGED_BY], source_commit=since,
                       reason=f"updated outside git without pachsync's annotations (version "
                              f"{lp.version}; version {past.version} was applied from commit "
                              f"{since}){what}; {tail}")
    asked = adopt_requested(annotations_of(ps.spec))
    if policy.adopt or asked:
        how = "--adopt" if policy.adopt else f"annotation {ANN_ADOPT}"
        return replace(change, action=ADOPT, will_apply=True,
                       reason=f"exists, never managed by pachsync{what}; adopting ({how})")
    return replace(change, action=ADOPT, will_apply=False,
                   reason=f"exists, never managed by pachsync{what}; left alone: adopt it with "
                          f"--adopt or the spec annotation {ANN_ADOPT}: \"true\"")


def _block_readers_of_skipped(changes: list[PipelineChange]) -> list[PipelineChange]:
    """Skip every change that would apply but reads a conflict or another skipped change:
    its input would not be what git declares (or would not exist at all). Changes come in DAG
    order; the loop repeats until nothing moves, so any order is safe."""
    out = list(changes)
    skipped = {c.name for c in out if c.action == CONFLICT}
    moved = bool(skipped)
    while moved:
        moved = False
        for i, c in enumerate(out):
            ups = tuple(u for u in c.inputs if u in skipped)
            if not ups or not c.will_apply:
                continue
            out[i] = replace(c, will_apply=False, blocked_by=ups,
                             reason=f"{c.reason}; skipped: it reads {', '.join(ups)}, which "
                                    "this run leaves alone (a conflict, or reading one); "
                                    "applied once the conflict is resolved")
            skipped.add(c.name)
            moved = True
    return out


def touched_by_others(ann: Mapping[str, str], lp: LivePipeline, live_digest: str) -> bool:
    """Was the pipeline updated since we applied it? By version when we recorded the version our
    update produced (robust to server-side normalisation), else by the recorded spec hash."""
    applied = ann.get(ANN_APPLIED_VERSION, "")
    if applied.isdigit() and lp.version > 0:
        return lp.version != int(applied)
    recorded = ann.get(ANN_SPEC_HASH)
    return bool(recorded) and recorded != live_digest


def _live_only(lp: LivePipeline, policy: Policy, may_delete: bool) -> PipelineChange:
    ann = annotations_of(lp.spec)
    owner = ann.get(ANN_MANAGED_BY)
    base = PipelineChange(name=qualify(lp.project, lp.name), action=UNMANAGED,
                          project=lp.project,
                          inputs=tuple(qualify(lp.project, i) for i in live_inputs(lp.spec)),
                          managed_by=owner or "", source_commit=ann.get(ANN_SOURCE_COMMIT, ""))
    if owner is None or not same_source(owner, policy.source_id):
        why = "not managed by pachsync" if owner is None else f"managed by another source {owner!r}"
        return replace(base, reason=why + "; left alone")
    if may_delete:
        return replace(base, action=DELETE, reason="removed from git (--prune)", will_apply=True)
    return replace(base, action=ORPHAN, reason="removed from git; deleted only with --prune")


def live_inputs(spec: Mapping[str, Any]) -> list[str]:
    """Repos a live (or desired) spec reads, from its input tree."""
    return sorted({str(pfs["repo"]) for _, pfs in walk_pfs(spec.get("input")) if pfs.get("repo")})


def downstream_first(names: Iterable[str], inputs: Mapping[str, Sequence[str]]) -> list[str]:
    """Order pipelines so each comes before the pipelines it reads from (safe deletion order);
    of those that may go next, the first by name. O((nodes + edges) log nodes)."""
    pending = set(names)
    readers: dict[str, set[str]] = {n: set() for n in pending}  # each must go before n
    for n in pending:
        for up in inputs.get(n, ()):
            if up in readers and up != n:
                readers[up].add(n)
    graph = TopologicalSorter(readers)
    try:
        graph.prepare()
    except CycleError:  # cycles cannot come from a valid DAG; be safe
        return sorted(pending)
    order: list[str] = []
    ready: list[str] = []
    while graph.is_active():
        for n in graph.get_ready():
            heapq.heappush(ready, n)
        n = heapq.heappop(ready)
        order.append(n)
        graph.done(n)
    return order


def plan(desired: DesiredState, live: LiveState, policy: Policy) -> Plan:
    """Compare git's desired state with the live cluster and decide every action."""
    ReprocessMode(policy.reprocess)  # ValueError naming the value for a mode that does not exist
    live_names = frozenset(qualify(r.project, r.name) for r in live.repos)
    repos = tuple(RepoChange(r.name, UNCHANGED if qualify(r.project, r.name) in live_names
                             else CREATE,
                             r.description, r.project) for r in desired.repos)
    pipelines = {qualify(p.project, p.name): p for p in live.pipelines}
    changes = _block_readers_of_skipped([_desired_change(ps, live, policy, pipelines, live_names)
                                         for ps in desired.pipelines])
    wanted = {qualify(project_of(ps.spec), ps.name) for ps in desired.pipelines}
    empty_guard = not desired.pipelines and not policy.allow_empty
    may_delete = policy.prune and not empty_guard
    extra = [_live_only(lp, policy, may_delete) for lp in sorted(live.pipelines,
             key=lambda p: (p.project, p.name)) if qualify(lp.project, lp.name) not in wanted]
    changes += extra
    warnings = []
    if policy.prune and empty_guard and any(c.action == ORPHAN for c in extra):
        warnings.append("git declares no pipelines: refusing to prune without --allow-empty")
    inputs = {c.name: c.inputs for c in changes}
    delete_order = tuple(downstream_first((c.name for c in changes if c.action == DELETE), inputs))
    edges = tuple((up, c.name) for c in changes for up in c.inputs)
    conflicts = tuple(f"{c.name}: {c.reason}" for c in changes if c.action == CONFLICT)
    return Plan(policy=policy, repos=repos, pipelines=tuple(changes), delete_order=delete_order,
                edges=edges, warnings=tuple(warnings), conflicts=conflicts)
