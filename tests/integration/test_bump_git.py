"""bump-image against real git: one commit of only the spec files, push without force, replay on
a lost race, no-ops, refusals. The remote is a bare repo in tmp_path; "humans" are other clones
driven by the git CLI. Faults (extra racing pushes) are injected by wrapping our own
`agent.source.push._push_once`, never git itself.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.gitops import clone, git, seeded_remote

from agent.bump import BumpOptions, run_bump
from agent.cli import main
from agent.errors import Conflict, Transient, UsageError
from agent.source import push as push_mod
from agent.source.push import Author, PushRejected

IMAGE = "acr.example.io/iris-stages"
SPEC = """\
# the stage image; CI rewrites the tag
pipeline:
  name: {name}
transform:
  image: "acr.example.io/iris-stages:0.1.0"   # keep this comment
  cmd: [sh, -c, "cp /pfs/in/* /pfs/out/"]
input:
  pfs: {{repo: in, glob: "/*"}}
"""
BOT = Author("ci-bot", "ci-bot@example.invalid")


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare remote whose main has two pipeline specs, a README, and a ref-update log."""
    specs = {f"specs/pipelines/{name}.yaml": SPEC.format(name=name) for name in ("a", "b")}
    return seeded_remote(tmp_path, {**specs, "README.md": "hello\n"}, "seed",
                         config={"core.logAllRefUpdates": "always",
                                 "receive.denyNonFastForwards": "true"})


def human_commit(remote: Path, workdir: Path, path: str, text: str, message: str) -> str:
    """Another person pushes a commit to main from their own clone."""
    if not workdir.exists():
        clone(remote, workdir)
    git(workdir, "pull", "-q", "--ff-only", "origin", "main")
    (workdir / path).parent.mkdir(parents=True, exist_ok=True)
    (workdir / path).write_text(text)
    git(workdir, "add", path)
    git(workdir, "commit", "-q", "-m", message)
    git(workdir, "push", "-q", "origin", "HEAD:main")
    return git(workdir, "rev-parse", "HEAD")


def log(remote: Path) -> list[str]:
    return git(remote, "log", "--format=%s", "main").splitlines()


def opts(ci: Path, tag: str = "feed123", **kw: object) -> BumpOptions:
    base: dict[str, object] = dict(specs_dir=ci / "specs", image=IMAGE, tag=tag, commit=True,
                                   author=BOT, backoff_s=0.0)
    base.update(kw)
    return BumpOptions(**base)  # type: ignore[arg-type]


def assert_only_fast_forwards(remote: Path) -> None:
    """Every update of main in the remote's ref log moved it forward: nothing was force-pushed."""
    for line in git(remote, "reflog", "show", "--format=%H %gs", "main").splitlines()[:-1]:
        new = line.split()[0]
        old = git(remote, "rev-parse", f"{new}^")
        assert git(remote, "merge-base", "--is-ancestor", old, new) == ""


def test_commit_makes_one_commit_of_only_the_spec_files(remote: Path, tmp_path: Path) -> None:
    ci = clone(remote, tmp_path / "ci")
    (ci / "README.md").write_text("unrelated local edit\n")
    git(ci, "add", "README.md")  # staged but not part of the bump
    before = git(ci, "rev-parse", "HEAD")
    outcome = run_bump(opts(ci))
    assert outcome.status == "changed" and not outcome.pushed
    assert git(ci, "rev-list", "--count", f"{before}..HEAD") == "1"
    assert git(ci, "log", "-1", "--format=%s|%an|%ae") == (
        f"Bump {IMAGE} to feed123 [skip ci]|ci-bot|ci-bot@example.invalid")
    files = git(ci, "show", "--name-only", "--format=", "HEAD").splitlines()
    assert files == ["specs/pipelines/a.yaml", "specs/pipelines/b.yaml"]
    diff = git(ci, "show", "--format=", "-U0", "HEAD")
    assert diff.count(f'+  image: "{IMAGE}:feed123"   # keep this comment') == 2
    assert git(ci, "diff", "--cached", "--name-only") == "README.md"
    again = run_bump(opts(ci))
    assert again.status == "unchanged" and git(ci, "rev-list", "--count", f"{before}..HEAD") == "1"


def test_a_dirty_spec_file_is_refused(remote: Path, tmp_path: Path) -> None:
    ci = clone(remote, tmp_path / "ci")
    spec = ci / "specs" / "pipelines" / "a.yaml"
    spec.write_text(spec.read_text() + "# wip\n")
    with pytest.raises(UsageError, match="uncommitted changes"):
        run_bump(opts(ci))
    assert spec.read_text().endswith("# wip\n") and "0.1.0" in spec.read_text()


def test_push_after_a_human_merged_meanwhile_replays_and_keeps_both(
    remote: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ci = clone(remote, tmp_path / "ci")  # CI checked out the merge, then built for a while...
    human_commit(remote, tmp_path / "alice", "stages/x.py", "print(1)\n", "Alice: tweak stage")
    code = main(["bump-image", IMAGE, "feed123", "--specs", str(ci / "specs"), "--push",
                 "--backoff", "0", "--author-name", "bot", "--author-email", "bot@x.invalid"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "pushed" in out and "2 attempt(s), 1 replay(s)" in out
    assert log(remote) == [f"Bump {IMAGE} to feed123 [skip ci]", "Alice: tweak stage", "seed"]
    assert git(remote, "rev-parse", "main") == git(ci, "rev-parse", "HEAD")
    assert_only_fast_forwards(remote)


def test_repeated_races_retry_with_backoff_until_the_push_lands(
    remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ci = clone(remote, tmp_path / "ci")
    real: Callable[[Path, str, str], tuple[bool, str]] = push_mod._push_once
    calls: list[int] = []

    def racing_push(root: Path, remote_name: str, branch: str) -> tuple[bool, str]:
        calls.append(1)
        if len(calls) <= 3:  # someone lands a commit just before each of our first 3 pushes
            human_commit(remote, tmp_path / "bob", f"notes/{len(calls)}.txt", "x\n",
                         f"Bob {len(calls)}")
        return real(root, remote_name, branch)

    monkeypatch.setattr(push_mod, "_push_once", racing_push)
    sleeps: list[float] = []
    monkeypatch.setattr(push_mod, "_sleep", sleeps.append)
    outcome = run_bump(opts(ci, push=True, branch="main", backoff_s=0.5))
    assert (outcome.pushed, outcome.attempts, outcome.replays) == (True, 4, 3)
    assert sleeps == [0.5, 1.0, 2.0]
    subjects = log(remote)
    assert subjects.count(f"Bump {IMAGE} to feed123 [skip ci]") == 1
    assert subjects[0].startswith("Bump") and {"Bob 1", "Bob 2", "Bob 3"} <= set(subjects)
    assert_only_fast_forwards(remote)


def test_retries_exhausted_is_a_transient_error(
    remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ci = clone(remote, tmp_path / "ci")
    n = iter(range(100))
    real = push_mod._push_once

    def always_lose(root: Path, remote_name: str, branch: str) -> tuple[bool, str]:
        human_commit(remote, tmp_path / "bob", "n.txt", f"{next(n)}\n", "Bob")
        return real(root, remote_name, branch)

    monkeypatch.setattr(push_mod, "_push_once", always_lose)
    with pytest.raises(Transient, match="failed 3 times"):
        run_bump(opts(ci, push=True, branch="main", retries=2))
    assert not any(s.startswith("Bump") for s in log(remote))


def test_a_concurrent_identical_bump_means_nothing_left_to_push(
    remote: Path, tmp_path: Path
) -> None:
    ci = clone(remote, tmp_path / "ci")
    other = clone(remote, tmp_path / "other-ci")
    rerun = opts(other, push=True, author=Author("rerun", "rerun@example.invalid"))
    assert run_bump(rerun).pushed  # a rerun of the same build won the race
    outcome = run_bump(opts(ci, push=True))
    assert (outcome.status, outcome.pushed, outcome.commit) == ("unchanged", False, None)
    assert [s for s in log(remote) if s.startswith("Bump")] == [
        f"Bump {IMAGE} to feed123 [skip ci]"]


def test_an_older_build_never_rolls_back_a_newer_bump(remote: Path, tmp_path: Path) -> None:
    old_sha = human_commit(remote, tmp_path / "alice", "stages/x.py", "v1\n", "stage v1")
    new_sha = human_commit(remote, tmp_path / "alice", "stages/x.py", "v2\n", "stage v2")
    ci_old = clone(remote, tmp_path / "ci-old")
    git(ci_old, "checkout", "-q", "--detach", old_sha)  # Azure checks out the built commit
    ci_new = clone(remote, tmp_path / "ci-new")
    assert run_bump(opts(ci_new, tag=new_sha, push=True)).pushed
    outcome = run_bump(opts(ci_old, tag=old_sha, push=True, branch="main"))
    assert outcome.status == "superseded" and not outcome.pushed
    assert new_sha in (tmp_path / "ci-new" / "specs/pipelines/a.yaml").read_text()
    assert git(remote, "show", "main:specs/pipelines/a.yaml").count(new_sha) == 1


def test_local_commits_below_the_bump_are_rebased_not_lost(remote: Path, tmp_path: Path) -> None:
    ci = clone(remote, tmp_path / "ci")
    (ci / "docs.txt").write_text("mine\n")
    git(ci, "add", "docs.txt")
    git(ci, "commit", "-q", "-m", "my local commit")
    human_commit(remote, tmp_path / "alice", "other.txt", "hers\n", "Alice")
    outcome = run_bump(opts(ci, push=True))
    assert outcome.pushed and outcome.replays == 1
    assert log(remote)[:3] == [f"Bump {IMAGE} to feed123 [skip ci]", "my local commit", "Alice"]


def test_a_conflicting_local_commit_stops_with_conflict(remote: Path, tmp_path: Path) -> None:
    ci = clone(remote, tmp_path / "ci")
    (ci / "README.md").write_text("mine\n")
    git(ci, "commit", "-q", "-am", "my README")
    human_commit(remote, tmp_path / "alice", "README.md", "hers\n", "Alice README")
    with pytest.raises(Conflict):
        run_bump(opts(ci, push=True))
    assert git(ci, "log", "-1", "--format=%s").startswith("Bump")  # the clone is put back
    assert log(remote)[0] == "Alice README"


def test_a_server_side_refusal_stops_at_once(remote: Path, tmp_path: Path) -> None:
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho x >> \"$GIT_DIR/refusals\"\n"
                    "echo 'TF402455: Pushes to this branch are not permitted' >&2\nexit 1\n")
    hook.chmod(0o755)
    ci = clone(remote, tmp_path / "ci")
    with pytest.raises(PushRejected, match="refused"):
        run_bump(opts(ci, push=True))
    assert (remote / "refusals").read_text().count("x") == 1  # no pointless retries


def test_detached_head_needs_a_branch(remote: Path, tmp_path: Path) -> None:
    ci = clone(remote, tmp_path / "ci")
    git(ci, "checkout", "-q", "--detach")
    with pytest.raises(UsageError, match="detached") as info:
        run_bump(opts(ci, push=True))
    assert "--branch" in info.value.hint
    assert git(ci, "status", "--porcelain") == ""  # refused before writing anything
    outcome = run_bump(opts(ci, push=True, branch="main"))
    assert outcome.pushed and log(remote)[0].startswith("Bump")


def test_a_racing_edit_of_the_same_lines_is_replayed_not_lost(
    remote: Path, tmp_path: Path
) -> None:
    """Bob re-tags `a` by hand and edits a comment on the very line bump-image rewrites; the
    replay rewrites his version of the file: his comment stays, the tag becomes ours."""
    ci = clone(remote, tmp_path / "ci")
    bob_text = SPEC.format(name="a").replace(
        '"acr.example.io/iris-stages:0.1.0"   # keep this comment',
        '"acr.example.io/iris-stages:hotfix1"   # hotfix by Bob')
    human_commit(remote, tmp_path / "bob", "specs/pipelines/a.yaml", bob_text, "Bob hotfix")
    outcome = run_bump(opts(ci, push=True))
    assert outcome.pushed and outcome.replays == 1
    assert log(remote)[:2] == [f"Bump {IMAGE} to feed123 [skip ci]", "Bob hotfix"]
    a_text = git(remote, "show", "main:specs/pipelines/a.yaml")
    assert f'image: "{IMAGE}:feed123"   # hotfix by Bob' in a_text
    assert sorted(f.file for f in outcome.plan.files) == ["specs/pipelines/a.yaml",
                                                          "specs/pipelines/b.yaml"]


def test_local_changes_in_the_way_of_the_replay_stop_with_conflict(
    remote: Path, tmp_path: Path
) -> None:
    ci = clone(remote, tmp_path / "ci")
    (ci / "README.md").write_text("my uncommitted edit\n")  # not part of the bump
    human_commit(remote, tmp_path / "alice", "README.md", "hers\n", "Alice README")
    with pytest.raises(Conflict, match="cannot move the bump"):
        run_bump(opts(ci, push=True))
    assert git(ci, "log", "-1", "--format=%s").startswith("Bump")  # put back as it was
    assert (ci / "README.md").read_text() == "my uncommitted edit\n"
    assert log(remote)[0] == "Alice README"


ENV_IDENTITY = ("PACHSYNC_AUTHOR_NAME", "PACHSYNC_AUTHOR_EMAIL", "GIT_AUTHOR_NAME",
                "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL")
PAT = {"PACHSYNC_AUTHOR_NAME": "Pat Sync", "PACHSYNC_AUTHOR_EMAIL": "pat@example.invalid"}
GITA = {"GIT_AUTHOR_NAME": "Gita Env", "GIT_AUTHOR_EMAIL": "gita@example.invalid"}
CONF = {"user.name": "Conf Igured", "user.email": "conf@example.invalid"}
BOT_ID = ("pachsync-bot", "pachsync-bot@users.noreply.localhost")


def no_git_identity(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """No identity anywhere: an empty HOME, no global or system config, no identity variables,
    and git may not guess one from the host name (user.useConfigOnly)."""
    home.mkdir()
    for name in ENV_IDENTITY:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "user.useConfigOnly")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "true")


@pytest.mark.parametrize(
    ("env", "config", "expected"),
    [
        ({**PAT, **GITA}, {}, ("Pat Sync", "pat@example.invalid")),
        (GITA, CONF, ("Gita Env", "gita@example.invalid")),
        ({"PACHSYNC_AUTHOR_NAME": "Pat Sync", **GITA}, {}, ("Pat Sync", "gita@example.invalid")),
        ({}, CONF, ("Conf Igured", "conf@example.invalid")),
        ({"GIT_AUTHOR_NAME": "Gita Env"}, CONF, ("Gita Env", "conf@example.invalid")),
        ({}, {}, BOT_ID),
        ({"PACHSYNC_AUTHOR_EMAIL": "pat@example.invalid"}, {}, ("pachsync-bot",
                                                                "pat@example.invalid")),
    ],
    ids=["pachsync-env-over-git-env", "git-env-over-config", "per-field", "git-config",
         "env-name-config-email", "bot-default", "bot-name-env-email"],
)
def test_author_falls_back_to_the_environment_then_git_config_then_a_bot(
    remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], env: dict[str, str], config: dict[str, str],
    expected: tuple[str, str],
) -> None:
    """Without --author-*: PACHSYNC_AUTHOR_* over GIT_AUTHOR_* (field by field), then the
    clone's git config, then pachsync-bot; the committer is the author."""
    ci = clone(remote, tmp_path / "ci")
    for key, value in config.items():
        git(ci, "config", key, value)
    no_git_identity(monkeypatch, tmp_path / "home")
    if not config:  # the test's own environment really has no identity to fall back on
        assert subprocess.run(["git", "var", "GIT_COMMITTER_IDENT"], cwd=ci,
                              capture_output=True, check=False).returncode != 0
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(["bump-image", IMAGE, "feed123", "--specs", str(ci / "specs"), "--push",
                 "--backoff", "0"])
    assert code == 0, capsys.readouterr().out
    head = git(remote, "log", "-1", "--format=%s|%an|%ae|%cn|%ce", "main")
    assert head == "|".join((f"Bump {IMAGE} to feed123 [skip ci]", *expected, *expected))
    assert log(remote)[1:] == ["seed"]


def test_author_options_beat_the_environment(
    remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ci = clone(remote, tmp_path / "ci")
    no_git_identity(monkeypatch, tmp_path / "home")
    for name, value in {**PAT, **GITA}.items():
        monkeypatch.setenv(name, value)
    assert main(["bump-image", IMAGE, "feed123", "--specs", str(ci / "specs"), "--push",
                 "--backoff", "0", "--author-name", "Opt", "--author-email", "opt@x.invalid"]) == 0
    assert git(remote, "log", "-1", "--format=%an|%ae|%cn|%ce", "main") == (
        "Opt|opt@x.invalid|Opt|opt@x.invalid")


@pytest.mark.parametrize(
    ("options", "env", "expected"),
    [
        (["--author-name", "Opt"], {"GIT_AUTHOR_EMAIL": "gita@example.invalid"},
         ("Opt", "gita@example.invalid")),
        (["--author-email", "opt@x.invalid"], PAT, ("Pat Sync", "opt@x.invalid")),
        (["--author-name", "Opt"], {}, ("Opt", BOT_ID[1])),
    ],
    ids=["option-name-env-email", "env-name-option-email", "option-name-bot-email"],
)
def test_one_author_option_wins_for_its_field_only(
    remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    options: list[str], env: dict[str, str], expected: tuple[str, str],
) -> None:
    """A lone --author-name (or --author-email) is never dropped: it wins for its own field and
    the other field falls back as usual."""
    ci = clone(remote, tmp_path / "ci")
    no_git_identity(monkeypatch, tmp_path / "home")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["bump-image", IMAGE, "feed123", "--specs", str(ci / "specs"), "--push",
                 "--backoff", "0", *options]) == 0
    assert git(remote, "log", "-1", "--format=%an|%ae|%cn|%ce", "main") == "|".join(
        (*expected, *expected))
