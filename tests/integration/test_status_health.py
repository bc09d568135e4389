"""Sync and health beside each other, with a real localpachd, real git and real jobs:
`pachsync status`, the agent's /status and its /metrics (the runner in process behind its real
HTTP server) agree on every pipeline in every state; `status --wait` exits 0 when all is Synced
and Healthy, 1 when a job failed, 2 when a datum never ends; a pipeline removed from a checkout
of the agent's source is an Orphan (not "in sync"); a dirty work tree's commit keeps `+dirty`."""

from __future__ import annotations

import io
import json
import urllib.request
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import python_pachyderm
from helpers.gitops import GitOps, git
from helpers.jobs import newest_job, state, wait_jobs
from helpers.pfs import put
from helpers.wait import wait_for
from prometheus_client.parser import text_string_to_metric_families
from python_pachyderm.proto.v2.pps import pps_pb2

from agent.cli import main
from agent.cluster.client import connected
from agent.plan.health import Health, Sync, waiting_on
from agent.runner import AgentServer, Runner, RunnerConfig, WebhookAuth
from agent.sync import SyncOptions, status_report, sync_once

REPOS = "repos:\n  - name: words\n    description: input words\n"
OK = ["sh", "-c", "cp /pfs/words/* /pfs/out/"]
BROKEN = ["sh", "-c", "echo boom >&2; exit 3"]


def spec(name: str, cmd: list[str], description: str = "from git") -> str:
    return (f"pipeline:\n  name: {name}\ndescription: {description}\ntransform:\n"
            f"  image: example.org/tools:1.0\n  cmd: {json.dumps(cmd)}\n"
            "input:\n  pfs:\n    repo: words\n    glob: /*\n")


def blocked(release: Path) -> list[str]:
    """A datum that runs until `release` exists (then succeeds)."""
    return ["sh", "-c", f"while [ ! -e '{release}' ]; do sleep 0.05; done; true"]


@pytest.fixture
def pachd(tmp_path: Path) -> Iterator[Any]:
    """localpachd with room for a blocked datum next to the others."""
    from localpachd.server import start

    server = start(data_dir=tmp_path / "pachd", port=0, max_parallelism=4)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def release(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "release"
    try:
        yield path
    finally:
        path.touch()  # let any blocked datum end before the server stops


def client_of(server: Any) -> Any:
    return python_pachyderm.Client(host=server.host, port=server.port)


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def hand_pipeline(client: Any, name: str, annotations: dict[str, str]) -> None:
    """A pipeline made with pachctl, not from our git: `annotations` as given."""
    req = pps_pb2.CreatePipelineRequest(
        pipeline=pps_pb2.Pipeline(name=name),
        transform=pps_pb2.Transform(image="example.org/tools:1.0", cmd=OK),
        input=pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="words", glob="/*")),
        metadata=pps_pb2.Metadata(annotations=annotations))
    client.create_pipeline_from_request(req)


def hand_edit(client: Any, name: str) -> None:
    """`pachctl update pipeline` with a new description: annotations kept, version + 1."""
    info = next(iter(client.inspect_pipeline(name, details=True)))
    d = info.details
    client.create_pipeline_from_request(pps_pb2.CreatePipelineRequest(
        pipeline=info.pipeline, transform=d.transform, input=d.input, metadata=d.metadata,
        description="edited by hand", update=True))


def settle(address: str, still: set[str], timeout: float = 120) -> None:
    """Poll until nothing but `still` is Progressing (jobs started by the setup end)."""
    busy: set[str] = set()

    def settled() -> bool:
        busy.clear()
        busy.update(s.name for s in waiting_on(status_report(conn, None).pipelines))
        return busy <= still

    with connected(address) as conn:
        wait_for(settled, lambda: f"nothing but {still} progressing (still: {busy})", timeout,
                 interval=0.1)


def wait_running(client: Any, name: str, timeout: float = 60) -> None:
    def running() -> bool:
        job = newest_job(client, name)
        return job is not None and state(job) == "JOB_RUNNING"

    wait_for(running, f"a job of {name} to run", timeout)


def http_get(base: str, path: str) -> bytes:
    with urllib.request.urlopen(base + path, timeout=30) as resp:
        return resp.read()  # type: ignore[no-any-return]


def metric_views(text: str) -> dict[str, tuple[str, str]]:
    """pipeline -> (sync, health) from /metrics; each pipeline has every value, exactly one 1."""
    ones: dict[str, dict[str, list[str]]] = {}
    seen: dict[tuple[str, str], set[str]] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in ("pachsync_pipeline_sync", "pachsync_pipeline_health"):
            continue
        key = "status" if family.name == "pachsync_pipeline_sync" else "health"
        for sample in family.samples:
            name, value = sample.labels["pipeline"], sample.labels[key]
            seen.setdefault((name, key), set()).add(value)
            if sample.value == 1.0:
                ones.setdefault(name, {}).setdefault(key, []).append(value)
    for (name, key), values in seen.items():
        assert values == {str(v) for v in (Sync if key == "status" else Health)}, (name, key)
    return {n: (v["status"][0], v["health"][0]) for n, v in ones.items()
            if len(v["status"]) == 1 and len(v["health"]) == 1}


EXPECTED = {
    "upper": ("Synced", "Healthy"), "stuck": ("Synced", "Progressing"),
    "broken": ("Synced", "Degraded"), "paused": ("Synced", "Suspended"),
    "edited": ("Drifted", "Healthy"), "gone": ("Orphan", "Healthy"),
    "tweaked": ("OutOfSync", "Healthy"), "later": ("OutOfSync", "Missing"),
    "owned": ("Conflict", "Healthy"), "theirs": ("Unmanaged", "Healthy"),
}


def test_status_slash_status_and_metrics_agree_in_every_state(
        tmp_path: Path, pachd: Any, release: Path) -> None:
    client = client_of(pachd)
    repo = GitOps(tmp_path / "git")
    v1 = {"specs/repos.yaml": REPOS, **{f"specs/pipelines/{n}.yaml": spec(n, cmd) for n, cmd in (
        ("upper", OK), ("stuck", blocked(release)), ("broken", BROKEN), ("paused", OK),
        ("edited", OK), ("gone", OK), ("tweaked", OK))}}
    repo.push(v1, "v1")
    opts = SyncOptions(source=str(repo.remote), pachd=pachd.address, cache_dir=tmp_path / "c1")
    first = Runner(opts, sync_once, config=RunnerConfig(interval_s=3600)).run_once()
    assert first is not None and first.result == "applied", first.errors

    put(client, "words", {"a.txt": "hello\n"})
    wait_jobs(client, ["upper", "broken", "paused", "edited", "gone", "tweaked"])
    wait_running(client, "stuck")
    client.stop_pipeline("paused")
    hand_edit(client, "edited")
    hand_pipeline(client, "theirs", {})
    hand_pipeline(client, "owned", {"pachsync.io/managed-by": "https://example.invalid/o.git"})
    repo.push({"specs/pipelines/gone.yaml": None,
               "specs/pipelines/tweaked.yaml": spec("tweaked", OK, "tweaked in git"),
               "specs/pipelines/owned.yaml": spec("owned", OK),
               "specs/pipelines/later.yaml": spec("later", OK)}, "v2")
    settle(pachd.address, still={"stuck"})

    # The agent, dry run (it plans and judges, changes nothing), behind its real HTTP server.
    dry = SyncOptions(source=str(repo.remote), pachd=pachd.address, cache_dir=tmp_path / "c2",
                      dry_run=True)
    runner = Runner(dry, sync_once, config=RunnerConfig(interval_s=3600))
    assert runner.run_once() is not None
    server = AgentServer(runner, "127.0.0.1:0", WebhookAuth()).start()
    try:
        host, port = server.address
        base = f"http://{host}:{port}"
        doc = json.loads(http_get(base, "/status"))
        metrics = metric_views(http_get(base, "/metrics").decode())
    finally:
        server.stop()
    code, out, err = cli("status", "--pachd", pachd.address, "--source", str(repo.remote),
                         "--cache-dir", str(tmp_path / "c3"), "--format", "json")
    assert code == 0, err
    shown = {r["name"]: r for r in json.loads(out)["pipelines"]}

    by_cli = {n: (r["sync"], r["health"]) for n, r in shown.items()}
    by_status = {n: (p["sync"], p["health"]) for n, p in doc["pipelines"].items()}
    assert by_cli == EXPECTED, by_cli
    assert by_status == EXPECTED and metrics == EXPECTED
    assert "datum(s) failed" in shown["broken"]["health_reason"]
    assert shown["broken"]["last_job"]["state"] == "JOB_FAILURE"
    assert shown["stuck"]["last_job"]["state"] == "JOB_RUNNING"
    assert doc["pipelines"]["broken"]["health_reason"] == shown["broken"]["health_reason"]
    assert doc["health"]["sync"]["OutOfSync"] == 2 and doc["health"]["health"]["Missing"] == 1

    code, text, _ = cli("status", "--pachd", pachd.address, "--source", str(repo.remote),
                        "--cache-dir", str(tmp_path / "c3"))
    rows = {line.split()[0]: line.split()[1:3] for line in text.splitlines()[2:] if line
            and not line.startswith((" ", "why:"))}
    assert {n: tuple(v) for n, v in rows.items()} == EXPECTED
    assert "  later: OutOfSync/Missing: not in the cluster" in text


def _specs_dir(tmp_path: Path, pipelines: dict[str, list[str]]) -> Path:
    specs = tmp_path / "specs"
    (specs / "pipelines").mkdir(parents=True)
    (specs / "repos.yaml").write_text(REPOS)
    for name, cmd in pipelines.items():
        (specs / "pipelines" / f"{name}.yaml").write_text(spec(name, cmd))
    return specs


def test_wait_exits_1_when_a_job_fails_and_0_when_all_is_healthy(
        tmp_path: Path, pachd: Any) -> None:
    specs = _specs_dir(tmp_path, {"upper": OK, "broken": BROKEN})
    args = ["--pachd", pachd.address, "--specs", str(specs)]
    assert cli("apply", *args)[0] == 0
    put(client_of(pachd), "words", {"a.txt": "hello\n", "b.txt": "world\n"})
    code, out, err = cli("status", *args, "--wait", "--timeout", "120", "--format", "json")
    got = {r["name"]: (r["sync"], r["health"]) for r in json.loads(out)["pipelines"]}
    assert (code, got) == (1, {"upper": ("Synced", "Healthy"), "broken": ("Synced", "Degraded")})

    (specs / "pipelines" / "broken.yaml").write_text(spec("broken", OK))  # fixed in git
    assert cli("apply", *args)[0] == 0
    code, out, err = cli("status", *args, "--wait", "--timeout", "120")
    assert code == 0, out + err
    assert "broken" in out and "Degraded" not in out


def test_wait_times_out_with_2_while_a_datum_never_ends(tmp_path: Path, pachd: Any,
                                                        release: Path) -> None:
    specs = _specs_dir(tmp_path, {"stuck": blocked(release)})
    args = ["--pachd", pachd.address, "--specs", str(specs)]
    assert cli("apply", *args)[0] == 0
    client = client_of(pachd)
    put(client, "words", {"a.txt": "hello\n"})
    wait_running(client, "stuck")
    code, out, err = cli("status", *args, "--wait", "--timeout", "1")
    assert code == 2, out + err
    assert "waiting for 1 pipeline(s): stuck (job " in err and "running" in err
    assert "error: timed out after 1s waiting for 1 pipeline(s): stuck" in err
    assert "stuck" in out and "Progressing" in out  # the last state is still shown
    release.touch()
    code, out, err = cli("status", *args, "--wait", "--timeout", "120")
    assert code == 0, out + err


def test_a_pipeline_removed_from_a_checkout_of_the_agents_source_is_an_orphan(
        tmp_path: Path, pachd: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's case: the agent applied from the git URL; `git rm` in a checkout (no
    --prune); `pachsync status` run in that checkout must say Orphan, as /status does."""
    repo = GitOps(tmp_path / "git")
    repo.push({"specs/repos.yaml": REPOS, "specs/pipelines/upper.yaml": spec("upper", OK),
               "specs/pipelines/select.yaml": spec("select", OK)}, "v1")
    opts = SyncOptions(source=str(repo.remote), pachd=pachd.address, cache_dir=tmp_path / "c")
    runner = Runner(opts, sync_once, config=RunnerConfig(interval_s=3600))
    assert runner.run_once().result == "applied"  # type: ignore[union-attr]
    repo.push({"specs/pipelines/select.yaml": None}, "git rm select")
    monkeypatch.chdir(repo.work)
    code, out, err = cli("status", "--pachd", pachd.address, "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    got = {r["name"]: r["sync"] for r in doc["pipelines"]}
    assert got == {"upper": "Synced", "select": "Orphan"}
    assert doc["desired"]["source_id"] == opts_source_id(opts)
    runner.run_once()
    assert {n: p["sync"] for n, p in runner_pipelines(runner).items()} == got


def opts_source_id(opts: SyncOptions) -> str:
    from agent.sync import source_id_for

    return source_id_for(opts.source, opts.branch, opts.specs_path)


def runner_pipelines(runner: Runner) -> dict[str, Any]:
    from agent.runner.status import to_dict

    return to_dict(runner.status)["pipelines"]  # type: ignore[no-any-return]


def test_text_status_keeps_dirty_on_the_commit(tmp_path: Path, pachd: Any) -> None:
    specs = _specs_dir(tmp_path / "tree", {"upper": OK})
    root = specs.parent
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "specs")
    sha = git(root, "rev-parse", "HEAD")
    (specs / "pipelines" / "upper.yaml").write_text(spec("upper", OK, "not committed yet"))
    args = ["--pachd", pachd.address, "--specs", str(specs)]
    assert cli("apply", *args)[0] == 0
    code, out, _ = cli("status", *args)
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("upper "))
    assert f"{sha[:12]}+dirty" in row.split(), row
    assert f"at {sha[:12]}+dirty" in out.splitlines()[0]


def test_the_runner_judges_health_again_on_every_tick(tmp_path: Path, pachd: Any,
                                                      release: Path) -> None:
    """Jobs finish after the apply: an unchanged run still moves Progressing to Healthy."""
    repo = GitOps(tmp_path / "git")
    repo.push({"specs/repos.yaml": REPOS, "specs/pipelines/stuck.yaml":
               spec("stuck", blocked(release))}, "v1")
    opts = SyncOptions(source=str(repo.remote), pachd=pachd.address, cache_dir=tmp_path / "c")
    runner = Runner(opts, sync_once, config=RunnerConfig(interval_s=3600))
    assert runner.run_once().result == "applied"  # type: ignore[union-attr]
    client = client_of(pachd)
    put(client, "words", {"a.txt": "hello\n"})
    wait_running(client, "stuck")
    again = runner.run_once()
    assert again is not None and again.result == "unchanged"
    assert runner_pipelines(runner)["stuck"]["health"] == "Progressing"
    release.touch()
    wait_jobs(client, ["stuck"])
    assert runner.run_once().result == "unchanged"  # type: ignore[union-attr]
    assert runner_pipelines(runner)["stuck"]["health"] == "Healthy"
    sample = runner.metrics.registry.get_sample_value(
        "pachsync_pipeline_health", {"pipeline": "stuck", "health": "Healthy"})
    assert sample == 1.0
