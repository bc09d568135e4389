"""The preview, step by step: base run (or its cache), head plan against it, head run, report.

Called by `agent.commands.preview`, which passes `start`: how to start a throwaway localpachd
on a data dir with a given stage-code folder first on its PYTHONPATH (the command layer owns
the child process). The head is planned against a copy of the base run's cluster with the same
source id, so the plan is what the agent will do after merge; when the stage code changed, the
specs are applied with a preview image tag, as CI's bump-image would after merge.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agent.cluster.address import resolve
from agent.cluster.client import Connection, connect
from agent.errors import PachsyncError
from agent.plan.data import DataPlan
from agent.plan.model import CREATE, DELETE, Plan
from agent.plan.render import render_markdown, to_dict
from agent.preview import cache
from agent.preview.checkout import (
    commit_of,
    export,
    image_changed,
    repo_root,
    stage_code,
    tree_hash,
)
from agent.preview.compare import compare
from agent.preview.model import Preview
from agent.preview.run import RunResult, collect, wait_for_jobs
from agent.specs import DesiredState
from agent.sync import Prepared, execute, make_data_plan, make_plan, prepare_local

SOURCE_ID = "pachsync-preview"  # both runs: the head plan sees the base run's pipelines as ours


class Server(Protocol):
    address: str

    def stop(self) -> None: ...


Starter = Callable[[Path, Path], Server]  # (data dir, stage code dir) -> a running server


@dataclass(frozen=True)
class Request:
    repo: Path  # inside the working tree
    base: str  # git ref
    out: Path  # preview.md, preview.html
    cache: Path
    timeout: float = 1800.0


def retag(image: str, tag: str) -> str:
    """IMAGE[:TAG|@DIGEST] with its tag (or digest) replaced by `tag`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name.rsplit(":", 1)[0] + f":{tag}" if ":" in last else f"{name}:{tag}"


def with_image_tag(desired: DesiredState, tag: str) -> DesiredState:
    """Every pipeline's transform.image retagged (what bump-image does on main after merge)."""
    pipelines = []
    for ps in desired.pipelines:
        spec = copy.deepcopy(ps.spec)
        transform = spec.get("transform") or {}
        if isinstance(transform.get("image"), str):
            transform["image"] = retag(transform["image"], tag)
        pipelines.append(dataclasses.replace(ps, spec=spec))
    return dataclasses.replace(desired, pipelines=tuple(pipelines))


def nothing_to_run(plan: Plan, data: DataPlan) -> bool:
    """No datum would run: no repo or pipeline to create or delete, no reprocess, no data."""
    return not (data.has_changes or plan.repos_to_create or plan.to_delete
                or any(c.reprocess or c.action in (CREATE, DELETE) for c in plan.to_apply))


def _names(desired: DesiredState) -> list[str]:
    return [ps.name for ps in desired.pipelines]


def _apply_and_collect(conn: Connection, prepared: Prepared, plan: Plan, data: DataPlan,
                       timeout: float) -> RunResult:
    execute(conn, plan, data=data)
    wait_for_jobs(conn, _names(prepared.desired), timeout)
    return collect(conn, _names(prepared.desired))


def run_base(root: Path, req: Request, tree: str, work: Path, start: Starter) -> cache.Entry:
    """Run the base tree on a fresh server and store its state and results in the cache."""
    src = export(root, tree, work / "tree")
    code = stage_code(src, work / "code")
    prepared = prepare_local(src / "specs", SOURCE_ID)
    state = work / "state"
    server = start(state, code)
    try:
        conn = connect(resolve(server.address))
        try:
            plan, live = make_plan(conn, prepared.desired, prepared.policy)
            data = make_data_plan(conn, prepared.desired, prepared.policy, live)
            result = _apply_and_collect(conn, prepared, plan, data, req.timeout)
        finally:
            conn.close()
    finally:
        server.stop()
    return cache.store(req.cache, tree, state, result)


def _html(address: str, out: Path, base: RunResult, head: RunResult | None,
          work: Path) -> tuple[str, tuple[str, ...]]:
    """preview.html: the report of the head cluster, compared with the base run's `test`
    output when the head re-ran it. Optional: a failure is a warning."""
    try:
        from agent.report.collect import Options, generate
    except ImportError as exc:
        return "", (f"preview.html skipped: {exc}",)
    base_test = next((j.id for j in base.jobs if j.pipeline == "test"), None)
    head_test = next((j.id for j in head.jobs if j.pipeline == "test"), None) if head else None
    compare_with = base_test if head_test and head_test != base_test else None
    try:
        done = generate(address, work / "report", Options(compare=compare_with))
    except PachsyncError as exc:
        return "", (f"preview.html skipped: {exc.message}",)
    target = out / "preview.html"
    shutil.copyfile(done.files.html, target)
    return str(target), ()


def preview(req: Request, start: Starter) -> Preview:
    root = repo_root(req.repo)
    base_commit, tree = commit_of(root, req.base), tree_hash(root, req.base)
    head_commit = commit_of(root, "HEAD")
    req.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pachsync-preview-") as tmp:
        work = Path(tmp)
        entry = cache.lookup(req.cache, tree)
        cached = entry is not None
        if entry is None:
            entry = run_base(root, req, tree, work / "base", start)
        base = entry.result()
        prepared = prepare_local(root / "specs", SOURCE_ID)
        bumped = image_changed(root, base_commit)
        if bumped:
            tag = f"preview-{(head_commit or 'worktree')[:12]}"
            prepared = dataclasses.replace(prepared,
                                           desired=with_image_tag(prepared.desired, tag))
        state = cache.restore(entry, work / "head" / "state")
        server = start(state, stage_code(root, work / "head" / "code"))
        try:
            conn = connect(resolve(server.address))
            try:
                plan, live = make_plan(conn, prepared.desired, prepared.policy)
                data = make_data_plan(conn, prepared.desired, prepared.policy, live)
                head = None if nothing_to_run(plan, data) else _apply_and_collect(
                    conn, prepared, plan, data, req.timeout)
            finally:
                conn.close()
            html, warnings = _html(server.address, req.out, base, head, work)
        finally:
            server.stop()
    return Preview(req.base, base_commit, tree, head_commit, render_markdown(plan, data),
                   to_dict(plan, data), base, head,
                   compare(base, head) if head is not None else None, cached, bumped, html,
                   warnings)
