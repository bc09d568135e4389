"""agent.source.fetch: clone once into the cache, fetch the branch head, never leak credentials."""

from __future__ import annotations

from pathlib import Path

import pytest
from agentcore_gitops import make_gitops, spec_files

from agent.errors import Transient
from agent.source.fetch import canonical_source, fetch, local_head, redact


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
