"""HTTP endpoints of the agent against a real ThreadingHTTPServer on port 0, with a scripted
sync function: webhooks trigger a sync at once, forged calls get 401 and trigger nothing,
/readyz flips after the first sync, /status and /metrics expose the loop's state."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from runner_fakes import FakeSync, Step

from agent.runner import AgentServer, Runner, RunnerConfig, WebhookAuth
from agent.runner.webhook import BasicAuth, sign
from agent.sync import SyncOptions

SECRET = b"generic-hook-secret"
AUTH = BasicAuth("azure", "hook-pass")
PUSH = json.dumps({"eventType": "git.push", "resource": {
    "refUpdates": [{"name": "refs/heads/main"}], "repository": {"name": "gitops"}}}).encode()


@dataclass
class Agent:
    runner: Runner
    fake: FakeSync
    base: str


@pytest.fixture
def agent() -> Iterator[Agent]:
    fake = FakeSync(steps=[Step("applied", actions={"split": "create", "model": "create"})])
    fake.release.clear()  # first sync hangs until the test releases it
    runner = Runner(SyncOptions(source="/srv/gitops", branch="main"), fake,
                    config=RunnerConfig(interval_s=3600, jitter=0.1))
    server = AgentServer(runner, "127.0.0.1:0", WebhookAuth(SECRET, AUTH)).start()
    runner.start()
    host, port = server.address
    try:
        yield Agent(runner, fake, f"http://{host}:{port}")
    finally:
        fake.release.set()
        runner.stop(wait=True)
        server.stop()


def signed(body: bytes, secret: bytes = SECRET) -> dict[str, str]:
    stamp = str(int(time.time()))
    return {"X-Pachsync-Signature": sign(secret, body, stamp), "X-Pachsync-Timestamp": stamp}


def call(url: str, body: bytes | None = None, headers: dict[str, str] | None = None
         ) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers=headers or {},
                                 method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


def ready(a: Agent) -> None:
    a.fake.release.set()
    assert a.runner.wait_for(lambda s: s.runs == 1, timeout=30)


def test_readyz_flips_after_the_first_sync(agent: Agent) -> None:
    assert call(agent.base + "/healthz")[0] == 200
    assert call(agent.base + "/readyz")[0] == 503
    ready(agent)
    assert call(agent.base + "/readyz") == (200, b"ready\n")


def test_generic_webhook_triggers_a_sync_at_once(agent: Agent) -> None:
    ready(agent)
    body = b'{"ref": "refs/heads/main"}'
    status, reply = call(agent.base + "/webhook/generic", body, signed(body))
    assert status == 202 and json.loads(reply)["triggered"] is True
    # Generous timeout: the point is that it runs without waiting for the 1 h interval.
    assert agent.runner.wait_for(lambda s: s.runs == 2, timeout=30)
    assert agent.fake.calls == 2
    assert agent.runner.status.last_attempt is not None
    assert agent.runner.status.last_attempt.trigger == "webhook/generic"


def test_azure_devops_push_triggers_a_sync(agent: Agent) -> None:
    ready(agent)
    status, _ = call(agent.base + "/webhook/azure-devops", PUSH, basic("azure", "hook-pass"))
    assert status == 202
    assert agent.runner.wait_for(lambda s: s.runs == 2, timeout=30)


def _assert_nothing_triggered(a: Agent) -> None:
    a.runner.stop(wait=True)  # waits for anything that was (wrongly) started
    assert a.fake.calls == 1 and a.runner.status.runs == 1


def test_forged_hmac_is_401_and_triggers_nothing(agent: Agent) -> None:
    ready(agent)
    body = b'{"ref": "refs/heads/main"}'
    for signature in (signed(body, b"guessed")["X-Pachsync-Signature"], "sha256=" + "0" * 64,
                      ""):
        status, reply = call(agent.base + "/webhook/generic", body,
                             {**signed(body), "X-Pachsync-Signature": signature})
        assert status == 401 and json.loads(reply)["triggered"] is False
    status, _ = call(agent.base + "/webhook/generic", body)  # no header at all
    assert status == 401
    value = agent.runner.metrics.registry.get_sample_value(
        "pachsync_webhook_requests_total", {"endpoint": "generic", "outcome": "unauthorized"})
    assert value == 4
    _assert_nothing_triggered(agent)


def test_wrong_basic_auth_is_401_and_triggers_nothing(agent: Agent) -> None:
    ready(agent)
    for headers in (basic("azure", "wrong"), basic("root", "hook-pass"),
                    {"Content-Type": "application/json"}):
        status, _ = call(agent.base + "/webhook/azure-devops", PUSH, headers)
        assert status == 401
    _assert_nothing_triggered(agent)


def test_push_to_another_branch_is_acknowledged_but_ignored(agent: Agent) -> None:
    ready(agent)
    other = PUSH.replace(b"refs/heads/main", b"refs/heads/feature")
    status, reply = call(agent.base + "/webhook/azure-devops", other, basic("azure", "hook-pass"))
    assert status == 202 and json.loads(reply)["triggered"] is False
    _assert_nothing_triggered(agent)


def test_status_document(agent: Agent) -> None:
    ready(agent)
    status, body = call(agent.base + "/status")
    doc = json.loads(body)
    assert status == 200 and doc["ready"] is True
    assert doc["lastAttempted"]["commit"] == "c1" and doc["lastAttempted"]["result"] == "applied"
    assert doc["lastApplied"]["commit"] == "c1"
    assert doc["pipelines"] == {"model": {"action": "create", "state": "Synced", "commit": "c1"},
                                "split": {"action": "create", "state": "Synced", "commit": "c1"}}
    assert doc["backoff"] == {"consecutiveFailures": 0, "delaySeconds": 0.0}
    assert doc["nextRunAt"] > time.time() + 3000


def test_metrics_exposes_the_pachsync_names(agent: Agent) -> None:
    ready(agent)
    status, body = call(agent.base + "/metrics")
    text = body.decode()
    assert status == 200
    for name in ("pachsync_sync_total{result=\"applied\"} 1.0",
                 "pachsync_sync_duration_seconds_bucket", "pachsync_sync_duration_seconds_count",
                 "pachsync_last_success_timestamp_seconds", "pachsync_pipelines_out_of_sync",
                 "pachsync_drift_detected_total", "pachsync_git_fetch_failures_total",
                 "pachsync_backoff_seconds", "pachsync_stalled", "pachsync_info{"):
        assert name in text, name
    assert 'pachsync_sync_total{result="failed"} 0.0' in text


def test_unknown_paths_and_oversized_bodies(agent: Agent) -> None:
    assert call(agent.base + "/nope")[0] == 404
    assert call(agent.base + "/webhook/other", b"{}")[0] == 404
    req = urllib.request.Request(agent.base + "/webhook/generic", data=b"x", method="POST",
                                 headers={"Content-Length": str(10 << 20)})
    try:
        urllib.request.urlopen(req, timeout=10)
        code = 200
    except urllib.error.HTTPError as err:
        code = err.code
    assert code == 413


def test_valid_webhook_while_shutting_down_is_503(agent: Agent) -> None:
    ready(agent)
    agent.runner.stop(wait=True)
    body = b"{}"
    status, reply = call(agent.base + "/webhook/generic", body, signed(body))
    assert status == 503 and json.loads(reply)["triggered"] is False
    assert agent.fake.calls == 1
