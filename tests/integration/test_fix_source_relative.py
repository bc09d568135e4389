"""`--source` given as a relative local path (`.`, `remote.git`): it is made absolute before it
becomes the cache clone's origin, so `.` names the user's repo, not the cache clone itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from agentcore_gitops import make_gitops, spec_files

from agent.cli import main
from agent.source.fetch import fetch, origin_url


def test_origin_url_resolves_only_existing_local_paths(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "repo").mkdir()
    assert origin_url(".") == str(tmp_path.resolve())
    assert origin_url("repo") == str((tmp_path / "repo").resolve())
    assert origin_url("https://host/org/specs.git") == "https://host/org/specs.git"
    assert origin_url("git@host:org/specs.git") == "git@host:org/specs.git"
    assert origin_url("missing-dir") == "missing-dir"


def test_fetch_of_a_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ops = make_gitops(tmp_path, spec_files())  # type: ignore[arg-type]
    monkeypatch.chdir(ops.work)
    checkout = fetch(".", "main", tmp_path / "cache")
    assert checkout.commit == ops.head and checkout.subject == "initial specs"
    assert checkout.source == str(ops.work.resolve())
    assert (checkout.path / "specs" / "pipelines" / "copy.yaml").is_file()
    monkeypatch.chdir(tmp_path)  # the same cache entry, reached by another relative spelling
    again = fetch(str(ops.remote.relative_to(tmp_path)), "main", tmp_path / "cache")
    assert again.commit == ops.head


def test_plan_with_source_dot(localpachd: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: Any) -> None:
    ops = make_gitops(tmp_path, spec_files())  # type: ignore[arg-type]
    monkeypatch.chdir(ops.work)
    code = main(["plan", "--source", ".", "--pachd", localpachd.address,
                 "--cache-dir", str(tmp_path / "cache"), "--format", "json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    data = json.loads(out.out)
    assert sorted(p["name"] for p in data["pipelines"]) == ["copy", "count"]
    assert [p["action"] for p in data["pipelines"]] == ["create", "create"]
    assert data["repos_to_create"] == ["raw"]
