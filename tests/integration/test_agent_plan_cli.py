"""`pachsync plan/apply/status` on the real specs/: convergence and exit codes.

Applying specs/ (the iris pipelines, without the data repos.yaml declares so no datum runs)
and planning again must report every pipeline unchanged: the normaliser covers every default
the server fills in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from helpers.jobs import wait_jobs

from agent.cli import main

ROOT = Path(__file__).resolve().parents[2]
SPECS = str(ROOT / "specs")
NAMES = ["split", "model", "test", "select"]


def _run(capsys: Any, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def _without_data(tmp_path: Path) -> str:
    """A copy of specs/ whose repos.yaml declares no data (tests/integration/test_data_in_git.py
    covers data)."""
    specs = tmp_path / "specs"
    (specs / "pipelines").mkdir(parents=True)
    for spec in (ROOT / "specs" / "pipelines").glob("*.yaml"):
        (specs / "pipelines" / spec.name).write_text(spec.read_text())
    repos = yaml.safe_load((ROOT / "specs" / "repos.yaml").read_text())
    for repo in repos["repos"]:
        repo.pop("data", None)
    (specs / "repos.yaml").write_text(yaml.safe_dump(repos))
    return str(specs)


def test_plan_apply_converges_for_every_spec(localpachd: Any, pach_client: Any,
                                             capsys: Any, tmp_path: Path) -> None:
    specs = _without_data(tmp_path)
    addr = ["--pachd", localpachd.address, "--specs", specs]
    code, out = _run(capsys, "plan", *addr, "--exit-code", "--format", "json")
    assert code == 1
    data = json.loads(out)
    assert [p["action"] for p in data["pipelines"]] == ["create"] * 4
    assert data["repos_to_create"] == ["raw_data", "parameters"]
    code, out = _run(capsys, "apply", *addr)
    assert code == 0 and "4 pipeline(s) created/updated in one transaction" in out
    code, out = _run(capsys, "plan", *addr, "--exit-code", "--format", "json")
    data = json.loads(out)
    assert code == 0, out
    assert {p["name"]: p["action"] for p in data["pipelines"]} == dict.fromkeys(NAMES, "unchanged")
    code, out = _run(capsys, "apply", *addr)
    assert code == 0 and "Nothing to apply" in out
    jobs = wait_jobs(pach_client, NAMES)  # no data loaded: one empty job per pipeline
    code, out = _run(capsys, "status", "--pachd", localpachd.address, "--specs", specs,
                     "--format", "json")
    rows = {r["name"]: r for r in json.loads(out)["pipelines"]}
    assert code == 0 and set(rows) == set(NAMES)
    assert all(r["sync"] == "Synced" and r["health"] == "Healthy" and r["managed_by"]
               for r in rows.values())
    for name, row in rows.items():
        assert row["state"] == "PIPELINE_RUNNING" and row["version"] == 1, row
        assert row["last_job"] == {"id": jobs[name].job.id, "state": "JOB_SUCCESS", "total": 0,
                                   "processed": 0, "skipped": 0, "failed": 0, "reason": "",
                                   "pipeline_version": 1}, row


def test_plan_markdown_for_a_pull_request(localpachd: Any, capsys: Any) -> None:
    code, out = _run(capsys, "plan", "--pachd", localpachd.address, "--specs", SPECS,
                     "--format", "markdown")
    assert code == 0
    assert "| `model` | + create |" in out and "```mermaid" in out
    assert "n_parameters --> n_model" in out


def test_invalid_specs_block_plan_and_apply(localpachd: Any, pach_client: Any, tmp_path: Path,
                                            capsys: Any) -> None:
    bad = tmp_path / "specs"
    (bad / "pipelines").mkdir(parents=True)
    (bad / "repos.yaml").write_text((ROOT / "specs" / "repos.yaml").read_text())
    (bad / "pipelines" / "split.yaml").write_text(
        (ROOT / "specs" / "pipelines" / "split.yaml").read_text().replace("glob: /", "glb: /"))
    for cmd in ("plan", "apply"):
        code, out = _run(capsys, cmd, "--pachd", localpachd.address, "--specs", str(bad))
        assert code == 1 and "pipelines/split.yaml:" in out
    code, out = _run(capsys, "plan", "--pachd", localpachd.address, "--specs", str(bad),
                     "--exit-code")
    assert code == 2 and "pipelines/split.yaml:" in out
    assert list(pach_client.list_repo()) == []


def test_unreachable_pachd_exits_2(tmp_path: Path, capsys: Any) -> None:
    code, out = _run(capsys, "plan", "--pachd", "127.0.0.1:1", "--specs", SPECS, "--exit-code")
    assert code == 2 and "listing repos: cannot reach pachd at grpc://127.0.0.1:1" in out, out


def test_plan_and_apply_from_a_git_source(localpachd: Any, pach_client: Any, tmp_path: Path,
                                          capsys: Any) -> None:
    from agentcore_gitops import make_gitops, spec_files

    ops = make_gitops(tmp_path, spec_files())  # type: ignore[arg-type]
    src = ["--pachd", localpachd.address, "--source", str(ops.remote), "--branch", "main",
           "--cache-dir", str(tmp_path / "cache")]
    code, out = _run(capsys, "apply", *src, "--dry-run")
    assert code == 0 and "dry run: nothing applied" in out
    assert list(pach_client.list_pipeline()) == []
    code, out = _run(capsys, "plan", *src, "--exit-code", "--format", "json")
    data = json.loads(out)
    assert code == 1 and data["commit"] == ops.head
    assert [p["action"] for p in data["pipelines"]] == ["create", "create"]
    code, out = _run(capsys, "apply", *src, "--format", "json")
    assert code == 0 and json.loads(out)["applied"]["pipelines"] == ["copy", "count"]
    code, out = _run(capsys, "plan", *src, "--exit-code")
    assert code == 0 and "2 unchanged" in out
    code, out = _run(capsys, "plan", *src, "--specs", "x")
    assert code == 2 and "mutually exclusive" in out
