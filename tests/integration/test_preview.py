"""`pachsync preview --base HEAD~1` in a real git repo (the project's specs/, stages/ and data/
committed, then one change committed on top), run as the CLI on real localpachd servers.

One base run serves every test: the module fixture primes the preview cache (keyed by the base
tree hash, which every test's HEAD~1 shares), so each test pays only for its head run. Covers:
a one-line change to stages/select.py changes the selection (and proves each run imports its own
checkout's stages); a description-only change runs no job for the head; a broken stage reports
its failed job with its log and exits 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers.gitops import git

from agent.util.safetext import md_code

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Ran:
    code: int
    out: dict[str, Any]
    md: str
    stderr: str


def preview(repo: Path, cache: Path, base: str = "HEAD~1") -> Ran:
    out = repo.parent / f"{repo.name}-out"
    proc = subprocess.run([sys.executable, "-m", "agent", "preview", "--base", base, "--out",
                           str(out), "--cache", str(cache), "--format", "json"],
                          cwd=repo, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return Ran(proc.returncode, json.loads(proc.stdout), (out / "preview.md").read_text(),
               proc.stderr)


@pytest.fixture(scope="module")
def base_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A repo holding the project's committed specs/, stages/ and data/, and a primed cache."""
    top = tmp_path_factory.mktemp("preview")
    repo, cache = top / "base", top / "cache"
    repo.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD", "specs", "stages",
                              "data"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(repo)], input=archive, check=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "commit", "-q", "--allow-empty", "-m", "no change")
    primed = preview(repo, cache)
    assert primed.code == 0, primed.md
    assert primed.out["base"]["cached"] is False
    assert primed.out["head"]["ran"] is False and primed.out["head"]["jobs"] == []
    assert primed.out["base"]["result"]["selected"], "the base run selected nothing"
    yield repo, cache


def change(base: tuple[Path, Path], name: str, path: str, old: str, new: str) -> Ran:
    """Clone the base repo, replace `old` by `new` in `path` (exactly once), commit, preview."""
    repo = base[0].parent / name
    git(base[0].parent, "clone", "-q", str(base[0]), str(repo))
    text = (repo / path).read_text()
    assert text.count(old) == 1, f"{path} no longer holds {old!r}: update this test"
    (repo / path).write_text(text.replace(old, new))
    git(repo, "commit", "-q", "-am", f"change {path}")
    return preview(repo, base[1])


def test_select_change_names_the_changed_selection(base_repo: tuple[Path, Path]) -> None:
    # the cross-validation tie-breaker off: every model tied at the best accuracy is selected
    ran = change(base_repo, "select", "stages/select.py",
                 'return rule, break_ties(candidates) if tie_break == "cv" else candidates',
                 "return rule, candidates")
    assert ran.code == 0, ran.md
    assert ran.out["base"]["cached"] is True  # one base run for all tests
    assert ran.out["image_bumped"] is True
    cmp = ran.out["comparison"]
    assert cmp["newly_selected"], ran.md  # the head imported its own stages/select.py
    assert cmp["selected_after"] > cmp["selected_before"]
    assert {j["pipeline"] for j in ran.out["head"]["jobs"]} == {"split", "model", "test",
                                                                "select"}
    assert f"Newly selected: {md_code(cmp['newly_selected'][0])}" in ran.md
    assert "update with reprocess" in ran.md and "stage code comes from the checkout" in ran.md
    assert (Path(ran.out["files"]["html"]).read_text()).startswith("<!")


def test_description_only_change_runs_nothing(base_repo: tuple[Path, Path]) -> None:
    ran = change(base_repo, "descr", "specs/pipelines/select.yaml", "Keeps the best models",
                 "Keeps the very best models")
    assert ran.code == 0, ran.md
    assert ran.out["head"]["ran"] is False and ran.out["head"]["jobs"] == []
    assert ran.out["comparison"] is None
    assert "Nothing to run" in ran.md
    assert ran.out["plan"]["counts"]["update"] == 1, ran.out["plan"]


def test_broken_stage_reports_the_failed_job(base_repo: tuple[Path, Path]) -> None:
    ran = change(base_repo, "broken", "stages/split.py", "\nimport argparse\n",
                 "\nimport argparse\nraise RuntimeError('preview test: a broken stage')\n")
    assert ran.code == 1, ran.md
    states = {j["pipeline"]: j["state"] for j in ran.out["head"]["jobs"]}
    assert states == {"split": "FAILURE", "model": "UNRUNNABLE", "test": "UNRUNNABLE",
                      "select": "UNRUNNABLE"}
    assert "**A preview job failed:** `split` (3 downstream job(s) could not run)" in ran.md
    assert "could not run because an upstream job failed: `model`, `test`, `select`" in ran.md
    assert "preview test: a broken stage" in ran.md  # the last lines of its log
    assert "running user code" not in ran.md  # the user code's lines, not the worker's
