"""agent.source.fetch: clone once into the cache, fetch the branch head, never leak credentials;
a relative local `--source` (`.`, `remote.git`) names the user's repo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from agentcore_gitops import make_gitops, spec_files

from agent.cli import main
from agent.errors import Transient
from agent.source.fetch import canonical_source, fetch, local_head, origin_url, redact


def test_canonical_source_and_redaction() -> None:
    assert canonical_source("https://user:tok@dev.azure.com/org/p/_git/specs/") == \
        "https://dev.azure.com/org/p/_git/specs"
    assert canonical_source("git@github.com:org/specs.git") == "git@github.com:org/specs.git"
    assert redact("fatal: https://x:secret@host/repo not found") == \
        "fatal: https://***@host/repo not found"


def test_fetch_follows_the_branch_and_resets_the_cache(tmp_path: Path) -> None:
    ops = make_gitops(tmp_path, spec_files())  # type: ignore[arg-type]
    cache = tmp_path / "cache"
    first = fetch(str(ops.remote), "main", cache)
    assert first.commit == ops.head and first.subject == "initial specs"
    assert (first.path / "specs" / "pipelines" / "copy.yaml").is_file()
    (first.path / "specs" / "repos.yaml").write_text("tampered")  # local edits never survive
    (first.path / "stray.txt").write_text("x")
    sha = ops.push(spec_files(count=False) | {"specs/pipelines/count.yaml": None}, "drop count")
    second = fetch(str(ops.remote), "main", cache)
    assert second.path == first.path and second.commit == sha
    assert not (second.path / "specs" / "pipelines" / "count.yaml").exists()
    assert "tampered" not in (second.path / "specs" / "repos.yaml").read_text()
    assert not (second.path / "stray.txt").exists()
    assert local_head(ops.work / "specs") == sha
    (ops.work / "specs" / "repos.yaml").write_text("changed")
    assert local_head(ops.work / "specs") == sha + "+dirty"
    assert local_head(tmp_path / "nowhere") is None


def test_missing_branch_or_remote_is_transient_without_secrets(tmp_path: Path) -> None:
    ops = make_gitops(tmp_path, spec_files())  # type: ignore[arg-type]
    with pytest.raises(Transient) as exc:
        fetch(str(ops.remote), "nope", tmp_path / "cache")
    assert "check the branch name" in exc.value.hint
    with pytest.raises(Transient) as exc:
        fetch("https://user:s3cret@127.0.0.1:1/specs.git", "main", tmp_path / "cache")
    assert "s3cret" not in exc.value.message and "127.0.0.1:1/specs.git" in exc.value.message


# `--source` as a relative local path (`.`, `remote.git`) is made absolute before it becomes
# the cache clone's origin, so `.` names the user's repo, not the cache clone itself.

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
