"""`pachsync agent` as a real process against a real git remote and a real localpachd: webhooks
trigger syncs at once, forged ones get 401, an invalid commit stalls with file:line while the
cluster keeps the last good spec, SIGTERM stops it cleanly, and no credential is ever logged."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import python_pachyderm
from helpers.pachd import LocalPachdProcess
from runner_gitops import PIPELINE, UpperGitOps, pipeline_info

from agent.runner.webhook import sign

HOOK_SECRET = "hmac-Secret-4711"
BASIC = ("azure", "basic-Pass-0815")
PACH_TOKEN = "pach-Token-9999"


class AgentProcess:
    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "agent", "agent", *args],
                                     stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env)
        self.lines: list[str] = []
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if "agent listening on" in line:
                self.base = "http://" + json.loads(line)["listen"]
                break
        else:
            raise AssertionError("agent did not start:\n" + "".join(self.lines))
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def call(self, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        req = urllib.request.Request(self.base + path, data=body, headers=headers or {},
                                     method="POST" if body is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                code, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            code, raw = err.code, err.read()
        try:
            return code, json.loads(raw)
        except ValueError:
            return code, raw.decode()

    def status_until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 120
                     ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            doc = self.call("/status")[1]
            if predicate(doc) or time.monotonic() > deadline:
                return doc  # type: ignore[no-any-return]
            time.sleep(0.1)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self._reader.join(timeout=10)
        return code


def applied(sha: str) -> Callable[[dict[str, Any]], bool]:
    return lambda doc: doc["lastApplied"]["commit"] == sha


def test_agent_process_webhooks_stall_and_clean_logs(
    tmp_path: Path, pachd_process: LocalPachdProcess
) -> None:

    repo = UpperGitOps(tmp_path / "git")
    v1 = repo.commit("v1")
    (tmp_path / "hook").write_text(HOOK_SECRET + "\n")
    (tmp_path / "basic").write_text(":".join(BASIC) + "\n")
    env = dict(os.environ, PACHSYNC_GIT_TOKEN="git-Token-1234", PACH_PYTHON_AUTH_TOKEN=PACH_TOKEN,
               PACH_CONFIG=str(tmp_path / "x"))
    agent = AgentProcess(
        ["--source", str(repo.remote), "--branch", "main", "--pachd", pachd_process.address,
         "--listen", "127.0.0.1:0", "--interval", "3600", "--log-format", "json",
         "--webhook-secret-file", str(tmp_path / "hook"),
         "--basic-auth-file", str(tmp_path / "basic"), "--cache-dir", str(tmp_path / "cache")],
        env)
    try:
        assert agent.status_until(applied(v1))["lastApplied"]["commit"] == v1
        assert agent.call("/readyz")[0] == 200

        v2 = repo.commit("v2")
        body = json.dumps({"ref": "refs/heads/main"}).encode()
        stamp = str(int(time.time()))
        forged = agent.call("/webhook/generic", body, {"X-Pachsync-Signature":
                                                        sign(b"guess", body, stamp),
                                                        "X-Pachsync-Timestamp": stamp})
        assert forged[0] == 401
        assert agent.call("/status")[1]["runs"] == 1  # the forged call triggered nothing
        ok = agent.call("/webhook/generic", body, {"X-Pachsync-Signature":
                                                    sign(HOOK_SECRET.encode(), body, stamp),
                                                    "X-Pachsync-Timestamp": stamp})
        assert ok == (202, {"triggered": True, "reason": "signed trigger"})
        doc = agent.status_until(applied(v2))
        assert doc["lastApplied"]["commit"] == v2 and doc["runs"] == 2

        bad = repo.commit("bad", pipeline_text=PIPELINE.format(description="bad").replace(
            "tools:1.0", "tools:latest"))
        auth = "Basic " + base64.b64encode(":".join(BASIC).encode()).decode()
        push = json.dumps({"eventType": "git.push", "resource": {
            "refUpdates": [{"name": "refs/heads/main"}]}}).encode()
        assert agent.call("/webhook/azure-devops", push, {"Authorization": auth})[0] == 202
        doc = agent.status_until(lambda d: d["stalled"] is not None)
        assert doc["stalled"]["commit"] == bad and doc["lastApplied"]["commit"] == v2
        # line 5 of upper.yaml is `image: example.org/tools:latest`
        assert "specs/pipelines/upper.yaml:5:" in doc["stalled"]["reason"], doc["stalled"]
        assert "'latest'" in doc["stalled"]["reason"]
        assert doc["lastAttempted"]["result"] == "invalid"
        metrics = agent.call("/metrics")[1]
        assert 'pachsync_sync_total{result="invalid"} 1.0' in metrics
        assert 'pachsync_stalled 1.0' in metrics
    finally:
        code = agent.stop()
    assert code == 0
    client = python_pachyderm.Client(host="127.0.0.1", port=pachd_process.port)
    assert pipeline_info(client, "upper")[0] == "v2"  # the invalid commit applied nothing

    log = "".join(agent.lines)
    for secret in (HOOK_SECRET, BASIC[1], "git-Token-1234", PACH_TOKEN):
        assert secret not in log
    syncs = [json.loads(line) for line in agent.lines
             if line.startswith("{") and '"event": "sync"' in line]
    assert [s["result"] for s in syncs] == ["applied", "applied", "invalid"]
    assert [s["commit"] for s in syncs] == [v1, v2, bad]
    assert all({"duration_s", "counts", "trigger"} <= s.keys() for s in syncs)
    assert syncs[1]["trigger"] == "webhook/generic"
    assert syncs[2]["trigger"] == "webhook/azure-devops"
