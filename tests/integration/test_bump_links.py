"""bump-image never reads or writes outside the checkout: a symbolic link merged under specs/ (a
spec file, pipelines/, the specs folder itself) is refused with an error naming it, and the file
it points at is left as it was, whether it arrives before the run, during a push race (the
replay reads again) or between reading and writing. Real git clones; links committed as git
stores them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.gitops import clone, git, seeded_remote

from agent.bump import BumpOptions, plan_bump, run_bump, write_bump
from agent.errors import PachsyncError
from agent.source import push as push_mod
from agent.source.push import Author

IMAGE = "acr.example.io/iris-stages"
SPEC = """\
pipeline:
  name: {name}
transform:
  image: "acr.example.io/iris-stages:0.1.0"
  cmd: [sh]
input:
  pfs: {{repo: in, glob: "/*"}}
"""
BOT = Author("ci-bot", "ci-bot@example.invalid")


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    specs = {f"specs/pipelines/{name}.yaml": SPEC.format(name=name) for name in ("a", "b")}
    return seeded_remote(tmp_path, specs, "seed")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside every checkout that looks like a spec (a CI secret, say)."""
    target = tmp_path / "secret" / "x.yaml"
    target.parent.mkdir()
    target.write_text(SPEC.format(name="x"))
    return target


def commit_link(remote: Path, workdir: Path, link: str, target: str) -> None:
    """Someone merges a symbolic link at `link` (replacing what was there) pointing at `target`."""
    if not workdir.exists():
        clone(remote, workdir)
    git(workdir, "pull", "-q", "--ff-only", "origin", "main")
    path = workdir / link
    if path.is_dir() and not path.is_symlink():
        git(workdir, "rm", "-rq", link)
    elif path.exists() or path.is_symlink():
        git(workdir, "rm", "-q", link)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)
    git(workdir, "add", link)
    git(workdir, "commit", "-q", "-m", f"link {link}")
    git(workdir, "push", "-q", "origin", "HEAD:main")


def opts(ci: Path, **kw: object) -> BumpOptions:
    base: dict[str, object] = dict(specs_dir=ci / "specs", image=IMAGE, tag="feed123",
                                   author=BOT, backoff_s=0.0)
    base.update(kw)
    return BumpOptions(**base)  # type: ignore[arg-type]


def links_to(outside: Path) -> list[tuple[str, str]]:
    """(link, target) variants: a spec file or folder that leads outside, or elsewhere inside."""
    return [
        ("specs/pipelines/c.yaml", str(outside)),
        ("specs/pipelines/c.yaml", "a.yaml"),  # inside the tree, still not the file itself
        ("specs/pipelines", str(outside.parent)),
        ("specs", str(outside.parent)),
    ]


@pytest.mark.parametrize("variant", range(4))
@pytest.mark.parametrize("commit", [False, True])
def test_a_merged_link_is_refused_and_its_target_untouched(
    remote: Path, tmp_path: Path, outside: Path, variant: int, commit: bool
) -> None:
    link, target = links_to(outside)[variant]
    commit_link(remote, tmp_path / "mallory", link, target)
    ci = clone(remote, tmp_path / "ci")
    before = outside.read_bytes(), git(ci, "rev-parse", "HEAD")
    with pytest.raises(PachsyncError) as caught:
        run_bump(opts(ci, commit=commit))
    assert "symbolic link" in caught.value.message and link in caught.value.message
    assert "not a symbolic link" in caught.value.hint
    assert (outside.read_bytes(), git(ci, "rev-parse", "HEAD")) == before
    assert git(ci, "status", "--porcelain") == ""


def test_a_link_arriving_during_a_push_race_is_refused_by_the_replay(
    remote: Path, tmp_path: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ci = clone(remote, tmp_path / "ci")
    real: Callable[[Path, str, str], tuple[bool, str]] = push_mod._push_once
    calls: list[int] = []

    def racing_push(root: Path, remote_name: str, branch: str) -> tuple[bool, str]:
        calls.append(1)
        if len(calls) == 1:  # a link lands on main just before our first push
            commit_link(remote, tmp_path / "mallory", "specs/pipelines/b.yaml", str(outside))
        return real(root, remote_name, branch)

    monkeypatch.setattr(push_mod, "_push_once", racing_push)
    before = outside.read_bytes()
    with pytest.raises(PachsyncError, match="symbolic link"):
        run_bump(opts(ci, push=True, branch="main"))
    assert outside.read_bytes() == before
    assert not git(remote, "log", "-1", "--format=%s", "main").startswith("Bump")


@pytest.mark.parametrize("swap", ["file", "folder"])
def test_a_link_swapped_in_after_reading_is_not_written_through(
    remote: Path, tmp_path: Path, outside: Path, swap: str
) -> None:
    ci = clone(remote, tmp_path / "ci")
    plan = plan_bump(ci / "specs", IMAGE, "feed123")
    assert len(plan.files) == 2
    before = outside.read_bytes()
    if swap == "file":
        victim = ci / "specs/pipelines/a.yaml"
        victim.unlink()
        victim.symlink_to(outside)
    else:
        folder = ci / "specs/pipelines"
        folder.rename(ci / "moved")
        folder.symlink_to(outside.parent)
    with pytest.raises(PachsyncError, match="symbolic link"):
        write_bump(plan)
    assert outside.read_bytes() == before


def test_the_rewrite_keeps_the_file_mode_and_leaves_no_temp_file(
    remote: Path, tmp_path: Path
) -> None:
    ci = clone(remote, tmp_path / "ci")
    spec = ci / "specs/pipelines/a.yaml"
    spec.chmod(0o640)
    run_bump(opts(ci))
    assert "feed123" in spec.read_text() and spec.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in spec.parent.iterdir()) == ["a.yaml", "b.yaml"]
