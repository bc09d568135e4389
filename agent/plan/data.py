"""PURE planning of data declared in git: the files git wants in each repo (`RepoSpec.data`)
against what pachsync wrote there (`LiveData`) -> a `DataPlan` of one write per changed repo.

Called by `agent.sync` (plan, apply, the agent) after the pipelines' plan; rendered by
`agent.plan.render`. Rules:

- a declared file whose content (SHA-256) equals what our manifest records is left alone; a
  different one is written (`change`), a new one too (`add`, or `replace` when the repo already
  holds a file there that pachsync did not write);
- a file pachsync wrote that someone else changed or deleted since is written again
  (`restore`): declared data follows git, as a drifted pipeline does;
- a file pachsync wrote that git no longer declares is deleted, unless someone else changed it
  since (then it is theirs: left alone, reported as `kept`); a file pachsync did not write is
  never deleted, and one found in a folder that split files fill is reported (`foreign`: the
  pipelines read it too);
- an unfinished data commit of ours (an interrupted write) is written into and finished.

What a change re-runs: the pipelines whose pfs input globs see a changed file (datum roots, as
Pachyderm matches globs: `agent.util.globs`), then every pipeline downstream of them. For a
direct reader the datums it re-runs are estimated when its input is a pfs input, a cross or a
union whose leaves are repos with declared data or globs without wildcards (one datum each);
otherwise they are not known before the job runs (None).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.cluster.datamodel import DataWrite, LiveData, Manifest, encode_manifest
from agent.plan.model import Policy
from agent.plan.normalize import qualify
from agent.specs import DesiredState, PipelineSpec, RepoSpec
from agent.specs.data import DATA_BRANCH, DataFile
from agent.util.globs import datum_roots
from agent.util.inputs import walk_pfs

ADD, CHANGE, REPLACE, RESTORE, DELETE = "add", "change", "replace", "restore", "delete"
WRITES = (ADD, CHANGE, REPLACE, RESTORE)
SYMBOLS = {ADD: "+", CHANGE: "~", REPLACE: "~", RESTORE: "!", DELETE: "-"}
MAX_LISTED = 5  # example paths in a warning


@dataclass(frozen=True)
class FileChange:
    path: str
    action: str
    source: str = ""  # where git has it (data/iris.csv, or file:line); "" for a delete
    size: int = 0


@dataclass(frozen=True)
class Rerun:
    """A pipeline a data change re-runs: `direct` when its globs see a changed file (then
    `inputs` names them and `datums` estimates the datums it re-runs, None if unknown)."""

    pipeline: str
    direct: bool
    datums: int | None = None
    inputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class RepoDataPlan:
    repo: str
    project: str = "default"
    branch: str = DATA_BRANCH
    changes: tuple[FileChange, ...] = ()
    unchanged: int = 0
    kept: tuple[str, ...] = ()  # ours, no longer declared, changed by someone else: left alone
    foreign: tuple[str, ...] = ()  # not ours, in a folder split files fill
    write: DataWrite | None = None

    @property
    def name(self) -> str:
        return qualify(self.project, self.repo)

    def count(self, *actions: str) -> int:
        return sum(1 for c in self.changes if c.action in actions)


@dataclass(frozen=True)
class DataPlan:
    repos: tuple[RepoDataPlan, ...] = ()
    reruns: tuple[Rerun, ...] = ()
    warnings: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def declared(self) -> bool:
        return bool(self.repos)

    @property
    def writes(self) -> tuple[DataWrite, ...]:
        return tuple(r.write for r in self.repos if r.write is not None)

    @property
    def has_changes(self) -> bool:
        return bool(self.writes)


def plan_data(desired: DesiredState, live: Mapping[tuple[str, str], LiveData],
              policy: Policy) -> DataPlan:
    """The data plan: one `RepoDataPlan` per repo that declares data, in repos.yaml order."""
    repos = tuple(_plan_repo(r, live.get((r.project, r.name)) or LiveData(r.name, r.project,
                                                                        missing=True), policy)
                  for r in desired.repos if r.data is not None)
    warnings = tuple(w for r in repos for w in _warnings(r))
    return DataPlan(repos, reruns(desired, repos), warnings)


def _plan_repo(spec: RepoSpec, live: LiveData, policy: Policy) -> RepoDataPlan:
    assert spec.data is not None
    ours = dict(live.manifest.files) if live.manifest is not None else {}
    listing = live.listing or {}
    changes: list[FileChange] = []
    unchanged = 0
    for f in spec.data.files:
        action = _action(f, ours, live, listing)
        if action is None:
            unchanged += 1
        else:
            changes.append(FileChange(f.path, action, f.source, len(f.content)))
    wanted = {f.path for f in spec.data.files}
    gone = sorted(p for p in ours if p not in wanted and p not in live.deleted)
    kept = tuple(p for p in gone if p in live.changed)
    changes += [FileChange(p, DELETE) for p in gone if p not in live.changed]
    foreign = tuple(sorted(p for p in listing if p not in ours and p not in wanted
                           and any(p.startswith(d) for d in spec.data.dirs)))
    plan = RepoDataPlan(spec.name, spec.project, live.branch or DATA_BRANCH, tuple(changes),
                        unchanged, kept, foreign)
    if changes or live.open_commit:
        plan = _with_write(plan, spec.data.files, policy, live.open_commit)
    return plan


def _action(f: DataFile, ours: Mapping[str, str], live: LiveData,
            listing: Mapping[str, str]) -> str | None:
    recorded = ours.get(f.path)
    if recorded is None:
        return REPLACE if f.path in listing else ADD
    if f.path in live.changed or f.path in live.deleted:
        return RESTORE
    return None if recorded == f.digest else CHANGE


def _with_write(plan: RepoDataPlan, files: Iterable[DataFile], policy: Policy,
                into: str) -> RepoDataPlan:
    files = tuple(files)
    by_path = {f.path: f for f in files}
    puts = tuple((c.path, by_path[c.path].content) for c in plan.changes if c.action in WRITES)
    deletes = tuple(c.path for c in plan.changes if c.action == DELETE)
    manifest = Manifest(policy.source_id, policy.commit, {f.path: f.digest for f in files})
    write = DataWrite(plan.repo, plan.project, plan.branch, puts, deletes,
                      encode_manifest(manifest), policy.source_id, into)
    return RepoDataPlan(plan.repo, plan.project, plan.branch, plan.changes, plan.unchanged,
                        plan.kept, plan.foreign, write)


def _warnings(r: RepoDataPlan) -> list[str]:
    out = []
    if r.foreign:
        shown = ", ".join(r.foreign[:MAX_LISTED]) + (", ..." if len(r.foreign) > MAX_LISTED
                                                     else "")
        out.append(f"repo {r.name}: {len(r.foreign)} file(s) that pachsync did not write sit "
                   f"where git's line files go ({shown}); the pipelines read them too: delete "
                   f"them by hand (pachctl delete file {r.repo}@{r.branch}:PATH) if git's "
                   "lines replace them")
    if r.kept:
        out.append(f"repo {r.name}: {len(r.kept)} file(s) pachsync wrote are no longer in git "
                   f"but were changed by someone else since, so they are left alone: "
                   f"{', '.join(r.kept[:MAX_LISTED])}")
    return out


# -- what a data change re-runs ------------------------------------------------------------------
def reruns(desired: DesiredState, repos: Iterable[RepoDataPlan]) -> tuple[Rerun, ...]:
    """Direct readers (in DAG order) then the pipelines downstream of them."""
    changed = {(r.project, r.repo): r for r in repos if r.write is not None}
    if not changed:
        return ()
    finals = {(r.project, r.name): {f.path for f in r.data.files}
              for r in desired.repos if r.data is not None}
    out: list[Rerun] = []
    hit: set[str] = set()
    for p in desired.pipelines:
        inputs = _changed_inputs(p, changed)
        if inputs:
            hit.add(p.name)
            out.append(Rerun(p.name, True, _estimate(p, changed, finals), tuple(inputs)))
        elif hit.intersection(p.inputs):
            hit.add(p.name)
            out.append(Rerun(p.name, False))
    return tuple(out)


def _leaves(p: PipelineSpec) -> list[Mapping[str, Any]]:
    return [pfs for _, pfs in walk_pfs(p.spec.get("input"))]


def _key(p: PipelineSpec, pfs: Mapping[str, Any]) -> tuple[str, str]:
    pipeline = p.spec.get("pipeline") or {}
    own = (pipeline.get("project") or {}).get("name") if isinstance(pipeline, dict) else None
    return str(pfs.get("project") or own or "default"), str(pfs.get("repo") or "")


def _touched(r: RepoDataPlan) -> tuple[set[str], set[str]]:
    """(written paths, deleted paths) of a repo's change."""
    return ({c.path for c in r.changes if c.action in WRITES},
            {c.path for c in r.changes if c.action == DELETE})


def _changed_inputs(p: PipelineSpec, changed: Mapping[tuple[str, str], RepoDataPlan]
                    ) -> list[str]:
    out = []
    for pfs in _leaves(p):
        r = changed.get(_key(p, pfs))
        if r is None:
            continue
        written, deleted = _touched(r)
        glob = str(pfs.get("glob") or "")
        if datum_roots(glob, written | deleted):
            out.append(f"{pfs.get('name') or pfs.get('repo')} ({glob})")
    return out


def _estimate(p: PipelineSpec, changed: Mapping[tuple[str, str], RepoDataPlan],
              finals: Mapping[tuple[str, str], set[str]]) -> int | None:
    counts = _counts(p, p.spec.get("input"), changed, finals)
    return None if counts is None else counts[0] - counts[1]


def _counts(p: PipelineSpec, node: Any, changed: Mapping[tuple[str, str], RepoDataPlan],
            finals: Mapping[tuple[str, str], set[str]]) -> tuple[int, int] | None:
    """(datums, datums whose files did not change) of an input node, or None if unknown."""
    if not isinstance(node, Mapping):
        return None
    if isinstance(node.get("pfs"), Mapping):
        return _pfs_counts(p, node["pfs"], changed, finals)
    for combo, join in (("cross", math.prod), ("union", sum)):
        children = node.get(combo)
        if isinstance(children, list) and children:
            parts = [_counts(p, c, changed, finals) for c in children]
            if any(x is None for x in parts):
                return None
            known = [x for x in parts if x is not None]
            return join(x[0] for x in known), join(x[1] for x in known)
    return None


def _pfs_counts(p: PipelineSpec, pfs: Mapping[str, Any],
                changed: Mapping[tuple[str, str], RepoDataPlan],
                finals: Mapping[tuple[str, str], set[str]]) -> tuple[int, int] | None:
    key, glob = _key(p, pfs), str(pfs.get("glob") or "")
    if key not in finals:
        return (1, 1) if glob and not any(ch in glob for ch in "*?[{(\\") else None
    roots = datum_roots(glob, finals[key])
    r = changed.get(key)
    if r is None:
        return len(roots), len(roots)
    written, deleted = _touched(r)
    touched = (datum_roots(glob, written) | datum_roots(glob, deleted)) & roots
    return len(roots), len(roots) - len(touched)
