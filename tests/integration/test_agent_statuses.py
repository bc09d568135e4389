"""Azure DevOps commit statuses and signed events from the agent (issue 17 part 1), with a real
localpachd, a real bare git remote, the real sync and a local stand-in for Azure DevOps and for a
--notify-url sink: the sequence of statuses for a good commit (sync pending -> succeeded, health
pending -> succeeded), an invalid commit (sync failed with file:line) and a commit whose job
fails (health failed naming the pipeline); each request has the path, method, headers, auth,
api-version and body the REST API expects; the token never reaches the logs; and syncs complete
while the stand-in hangs or answers 500."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import python_pachyderm
from helpers.gitops import GitOps
from helpers.pfs import put
from helpers.standin import StandIn, stand_in
from helpers.wait import wait_for

from agent.notify.dispatch import RetryPolicy
from agent.notify.notifier import Notifier, NotifyConfig, build_notifier
from agent.runner import Runner, RunnerConfig, logs
from agent.runner.metrics import AgentMetrics
from agent.runner.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, check_hmac
from agent.sync import SyncOptions, sync_once

AZURE_SOURCE = "git@ssh.dev.azure.com:v3/Contoso/Iris/specs"
TOKEN = "pat-0123456789-SECRET"
NOTIFY_SECRET = "notify-s3cret"
REPOS = "repos:\n  - name: words\n    description: input words\n"
OK = ["sh", "-c", "cp /pfs/words/* /pfs/out/"]
BROKEN = ["sh", "-c", "echo boom >&2; exit 3"]


def spec(cmd: list[str], description: str = "from git") -> str:
    return (f"pipeline:\n  name: upper\ndescription: {description}\ntransform:\n"
            f"  image: example.org/tools:1.0\n  cmd: {json.dumps(cmd)}\n"
            "input:\n  pfs:\n    repo: words\n    glob: /*\n")


@pytest.fixture
def pachd(tmp_path: Path) -> Iterator[Any]:
    from localpachd.server import start

    server = start(data_dir=tmp_path / "pachd", port=0)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure("text", secrets=[TOKEN, NOTIFY_SECRET], level=logging.DEBUG, stream=stream)
    yield stream
    logging.getLogger(logs.LOGGER_NAME).handlers.clear()


def agent(tmp_path: Path, repo: GitOps, pachd: Any, stand: StandIn,
          policy: RetryPolicy) -> tuple[Runner, Notifier, AgentMetrics]:
    metrics = AgentMetrics("test", "main")
    config = NotifyConfig(source=AZURE_SOURCE, branch="main", azure_token=TOKEN,
                          azure_api_url=stand.url + "/tfs", target_url="https://agent/status",
                          notify_urls=(stand.url + "/events",), notify_secret=NOTIFY_SECRET)
    notifier = build_notifier(
        config, on_failure=lambda t, _: metrics.notifications_failed.labels(target=t).inc(),
        policy=policy)
    assert notifier is not None
    opts = SyncOptions(source=str(repo.remote), pachd=pachd.address, cache_dir=tmp_path / "c")
    runner = Runner(opts, sync_once, config=RunnerConfig(interval_s=3600), metrics=metrics,
                    secrets=[TOKEN], notifier=notifier)
    return runner, notifier, metrics


def statuses(stand: StandIn) -> list[tuple[str, str, str, str]]:
    """(sha, context, state, description) of every status the stand-in received, in order."""
    out = []
    for r in stand.received:
        if "/_apis/" in r.path:
            body = r.json()
            out.append((r.path.split("/commits/")[1].split("/")[0], body["context"]["name"],
                        body["state"], body["description"]))
    return out


def of(stand: StandIn, sha: str) -> list[tuple[str, str]]:
    return [(c, s) for h, c, s, _ in statuses(stand) if h == sha]


def run_until(runner: Runner, notifier: Notifier, stand: StandIn, sha: str,
              want: tuple[str, str]) -> None:
    """Interval ticks (run_once) until `want` (context, state) was posted for `sha`."""
    def posted() -> bool:
        runner.run_once("interval")
        notifier.wait_idle(30)
        return want in of(stand, sha)

    wait_for(posted, lambda: f"{want} for {sha[:12]} (got {of(stand, sha)})", 180, interval=0.2)


def test_statuses_of_a_good_an_invalid_and_a_failing_commit(
        tmp_path: Path, pachd: Any, log_text: io.StringIO) -> None:
    client = python_pachyderm.Client(host=pachd.host, port=pachd.port)
    repo = GitOps(tmp_path / "git")
    with stand_in() as stand:
        runner, notifier, _ = agent(tmp_path, repo, pachd, stand, RetryPolicy(base_s=0.05))
        try:
            good = repo.push({"specs/repos.yaml": REPOS, "specs/pipelines/upper.yaml": spec(OK)},
                             "good")
            first = runner.run_once()
            assert first is not None and first.result == "applied", first.errors
            put(client, "words", {"a.txt": "hello\n"})
            # the engine creates the job after the put returns: let it exist before the next
            # health checks, or a fast machine settles "Healthy, no job yet" first (then sees
            # the new job running and posts pending again)
            wait_for(lambda: list(client.list_job(pipeline_name="upper")), "upper's first job")
            run_until(runner, notifier, stand, good, ("health", "succeeded"))
            assert of(stand, good) == [("sync", "pending"), ("sync", "succeeded"),
                                       ("health", "pending"), ("health", "succeeded")], \
                statuses(stand)

            bad = repo.push({"specs/pipelines/upper.yaml": spec(OK) + "bogus_field: 1\n"},
                            "invalid")
            assert runner.run_once().result == "invalid"  # type: ignore[union-attr]
            notifier.wait_idle(30)
            assert of(stand, bad) == [("sync", "pending"), ("sync", "failed")]
            [failed] = [d for h, c, s, d in statuses(stand) if h == bad and s == "failed"]
            assert "specs/pipelines/upper.yaml:" in failed, failed

            broken = repo.push({"specs/pipelines/upper.yaml": spec(BROKEN)}, "job fails")
            run_until(runner, notifier, stand, broken, ("health", "failed"))
            for _ in range(3):  # later ticks: nothing new is posted
                runner.run_once("interval")
            notifier.wait_idle(30)
        finally:
            notifier.stop()
    assert of(stand, broken) == [("sync", "pending"), ("sync", "succeeded"),
                                 ("health", "pending"), ("health", "failed")]
    [degraded] = [d for h, c, s, d in statuses(stand) if (h, c, s) == (broken, "health",
                                                                          "failed")]
    assert degraded.startswith("Degraded: upper: job ") and "fail" in degraded
    assert of(stand, good).count(("health", "succeeded")) == 1

    azure = [r for r in stand.received if "/_apis/" in r.path]
    for r in azure:
        url = urlsplit(r.path)
        assert r.method == "POST" and url.path.startswith(
            "/tfs/contoso/iris/_apis/git/repositories/specs/commits/")
        assert url.path.endswith("/statuses") and parse_qs(url.query) == {"api-version": ["7.1"]}
        assert r.headers["Authorization"] == "Basic " + base64.b64encode(
            f":{TOKEN}".encode()).decode()
        assert r.headers["Content-Type"] == "application/json"
        body = r.json()
        assert set(body) == {"state", "description", "targetUrl", "context"}
        assert body["context"]["genre"] == "pachsync" and body["targetUrl"] == "https://agent/status"
    events = [r for r in stand.received if r.path == "/events"]
    assert len(events) == len(azure)
    for r in events:
        assert check_hmac(NOTIFY_SECRET.encode(), r.body, r.headers[SIGNATURE_HEADER],
                          r.headers[TIMESTAMP_HEADER])
        assert TOKEN not in r.body.decode()
    assert [(e.json()["commit"], e.json()["kind"], e.json()["state"]) for e in events] == [
        (h, c, s) for h, c, s, _ in statuses(stand)]
    assert TOKEN not in log_text.getvalue() and NOTIFY_SECRET not in log_text.getvalue()


@pytest.mark.parametrize("mode", ["hang", "fail"])
def test_syncs_complete_while_the_endpoint_hangs_or_fails(
        tmp_path: Path, pachd: Any, log_text: io.StringIO, mode: str) -> None:
    repo = GitOps(tmp_path / "git")
    with stand_in() as stand:
        stand.mode = mode
        # A hung request waits 60 s (the stand-in's own bound) before its timeout of 120 s: so
        # every sync below that completes while it is still unanswered was not held up by it.
        policy = RetryPolicy(attempts=3, base_s=0.01, max_s=0.05, timeout_s=120)
        runner, notifier, metrics = agent(tmp_path, repo, pachd, stand, policy)
        results = []
        try:
            for i in range(4):
                repo.push({"specs/repos.yaml": REPOS,
                           "specs/pipelines/upper.yaml": spec(OK, f"version {i}")}, f"v{i}")
                result = runner.run_once()
                assert result is not None
                results.append(result.result)
            assert stand.wait_count(1)
            if mode == "hang":
                assert not stand.release.is_set() and len(stand.received) == 2  # one per target
            else:
                assert notifier.wait_idle(60)
        finally:
            stand.release.set()
            notifier.stop()
    assert results == ["applied"] * 4
    failed = sum(s.value for m in metrics.registry.collect()
                 if m.name == "pachsync_notifications_failed" for s in m.samples
                 if s.name.endswith("_total"))
    if mode == "fail":
        assert failed > 0 and len(stand.received) >= 3 * 2  # retried, then counted
        # the reason is the error as raised ("HTTPError: HTTP Error 500: ...") or as a status
        assert re.search(r"notification to azure-devops not delivered: [^\n]*HTTP Error 500",
                         log_text.getvalue()), log_text.getvalue()
    assert TOKEN not in log_text.getvalue()
