"""`pachsync demo` end to end as a subprocess, then a GitOps change on the real iris pipelines.

One slow test (the full 77-model search runs once): the demo must write the data specs/repos.yaml
declares through the same path as `apply` (one job per pipeline), end with the selection (the
rule in words, not a Python dict) and leave its server running only because of --keep-running;
then an image bump of `select` must plan and apply as an update with reprocess that re-runs its
datum while `model` and `test` keep their outputs (no new job). The reprocess of many datums is
covered with tiny pipelines in tests/integration/test_agent_sync.py; here it must stay cheap on
a loaded 2-core CI machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import python_pachyderm
from helpers.jobs import newest_job, wait_jobs
from python_pachyderm.proto.v2.pps import pps_pb2

ROOT = Path(__file__).resolve().parents[2]
PACHSYNC = [sys.executable, "-m", "agent"]


@pytest.mark.slow
def test_demo_then_image_bump_reprocesses(tmp_path: Path) -> None:
    data_dir = tmp_path / "pachd"
    pid_match = None
    try:
        proc = subprocess.run([*PACHSYNC, "demo", "--data-dir", str(data_dir), "--keep-running"],
                              cwd=ROOT, capture_output=True, text=True, timeout=240)
        out = proc.stdout + proc.stderr
        pid_match = re.search(r"stop it with: kill (\d+)", out)
        assert proc.returncode == 0, out
        assert "model 77/77 ok" in out and "test 77/77 ok" in out and "select 1/1 ok" in out
        selected = re.search(r"Selected (\d+) of 77 models \(rule: accuracy within 0\.0 of the "
                             r"best; ties broken by cross-validated accuracy; best accuracy", out)
        assert selected and int(selected.group(1)) == 4, out  # the shipped data: 4 of 40 tied
        assert "{'kind'" not in out and "Data declared in git" in out
        assert "~ repo parameters: 18 to add, 0 unchanged" in out, out
        addr = re.search(r"listening on (\S+)", out).group(1)  # type: ignore[union-attr]
        host, port = addr.rsplit(":", 1)
        client = python_pachyderm.Client(host=host, port=int(port))
        for name in ("split", "model", "test", "select"):  # data and specs in one commit set
            assert len(list(client.list_job(pipeline_name=name))) == 1, name
        model_job = newest_job(client, "model").job.id
        test_job = newest_job(client, "test").job.id

        specs = tmp_path / "specs"
        (specs / "pipelines").mkdir(parents=True)
        (specs / "repos.yaml").write_text((ROOT / "specs/repos.yaml").read_text())
        shutil.copytree(ROOT / "data", tmp_path / "data")  # the data repos.yaml declares
        for name in ("split", "model", "test", "select"):
            text = (ROOT / f"specs/pipelines/{name}.yaml").read_text()
            if name == "select":
                text = re.sub(r"(image: \S+):\S+", r"\1:0.2.0", text)
            (specs / "pipelines" / f"{name}.yaml").write_text(text)
        common = ["--pachd", addr, "--specs", str(specs),
                  "--source-id", f"local:{(ROOT / 'specs').resolve()}"]
        plan = subprocess.run([*PACHSYNC, "plan", *common, "--format", "json", "--exit-code"],
                              capture_output=True, text=True, timeout=60)
        assert plan.returncode == 1, plan.stdout + plan.stderr
        acts = {p["name"]: p for p in json.loads(plan.stdout)["pipelines"]}
        assert {n: a["label"] for n, a in acts.items()} == {
            "split": "unchanged", "model": "unchanged", "test": "unchanged",
            "select": "update+reprocess"}
        assert acts["select"]["datums"] == 1
        assert "transform.image" in acts["select"]["reprocess_reason"]
        applied = subprocess.run([*PACHSYNC, "apply", *common], capture_output=True,
                                 text=True, timeout=60)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        select_job = wait_jobs(client, ["select"], timeout=40)["select"]
        assert (select_job.state, select_job.data_processed, select_job.data_skipped) == (
            pps_pb2.JOB_SUCCESS, 1, 0)
        assert newest_job(client, "model").job.id == model_job  # upstream untouched, no re-run
        assert newest_job(client, "test").job.id == test_job
    finally:
        pid_file = data_dir / "localpachd.pid"  # written by demo even if we never saw its output
        pid = int(pid_file.read_text()) if pid_file.exists() else None
        if pid_match or pid:
            os.kill(pid or int(pid_match.group(1)), signal.SIGTERM)  # type: ignore[union-attr]
