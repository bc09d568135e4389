"""`pachsync agent --once` through the real CLI with a scripted sync (our own wrapper patched
to inject outcomes): exit codes, one JSON log line per run, credentials never logged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runner_fakes import FakeSync, Step

import agent.sync
from agent.cli import main

TOKEN = "ghp_TopSecretToken42"
HOOK = "hook-secret-value-77"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeSync:
    f = FakeSync(head="abc123")
    monkeypatch.setattr(agent.sync, "sync_once", f)
    return f


@pytest.mark.parametrize(("step", "code"), [
    (Step("applied", actions={"split": "create"}), 0),
    (Step("unchanged"), 0),
    (Step("invalid", "SpecInvalid", ("specs/pipelines/a.yaml:3: name: bad",)), 1),
    (Step("failed", "SignatureInvalid", ("commit abc123 refused",)), 1),
    (Step("failed", "Transient", ("pachd unreachable",)), 2),
])
def test_once_exit_codes(fake: FakeSync, step: Step, code: int, tmp_path: Path) -> None:
    fake.steps = [step]
    assert main(["agent", "--source", str(tmp_path), "--once"]) == code
    assert fake.calls == 1


def test_json_log_line_per_run_without_credentials(
        fake: FakeSync, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PACHSYNC_GIT_TOKEN", TOKEN)
    hook = tmp_path / "hook"
    hook.write_text(HOOK + "\n")
    fake.steps = [Step("failed", "Transient",
                       (f"git fetch https://x:{TOKEN}@git.example/r.git failed ({HOOK})",))]
    code = main(["agent", "--source", "https://git.example/r.git", "--once", "--log-format",
                 "json", "--webhook-secret-file", str(hook)])
    assert code == 2
    err = capsys.readouterr().err
    assert TOKEN not in err and HOOK not in err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    runs = [line for line in lines if line.get("event") == "sync"]
    assert len(runs) == 1
    run = runs[0]
    assert run["commit"] == "abc123" and run["result"] == "failed"
    assert run["error_kind"] == "Transient" and "***" in run["errors"][0]
    assert isinstance(run["duration_s"], float) and run["counts"] == {}


def test_bad_flags_are_usage_errors(fake: FakeSync, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent", "--source", str(tmp_path), "--once", "--interval", "0"]) == 2
    assert main(["agent", "--source", str(tmp_path), "--once",
                 "--verify-signatures", "ssh"]) == 2
    assert "allowed-signers" in capsys.readouterr().err
    assert fake.calls == 0
