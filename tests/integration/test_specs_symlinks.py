"""Specs are read only from regular files inside the checkout (issue 12, item 2).

A pull request controls every entry under specs/: a symbolic link to a token file made
`pachsync validate` print the token in a snippet (and the agent log it on /status); a link to
/dev/zero or a FIFO hung or exhausted memory; a link loop raised a traceback. Every such entry,
and specs/ or specs/pipelines being a link, must be a `file:line` error naming the entry, with
the secret never printed, in every output format, through the real `pachsync validate` (a
subprocess with a generous timeout, so a hang fails the test instead of freezing the suite) and
through the agent's own path (a real git remote, `fetch`, `load_desired`).
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.errors import SpecError, SpecInvalid
from agent.specs import check_specs, load_desired

ROOT = Path(__file__).resolve().parents[2]
PACHSYNC = Path(sys.executable).parent / "pachsync"
SECRET = "pachsync-test-secret-7f3a9c"
TOKEN_SPEC = f"pipeline:\n  name: {SECRET}\n"  # a "spec" whose every line holds the secret


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "specs", root / "specs")
    shutil.copytree(ROOT / "data", root / "data")  # the data specs/repos.yaml declares
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the checkout holding a token file, a FIFO and a spec-like file."""
    place = tmp_path / "outside"
    place.mkdir()
    (place / "token").write_text(TOKEN_SPEC)
    (place / "select.yaml").write_text(TOKEN_SPEC)
    os.mkfifo(place / "fifo")
    return place


def _validate(cwd: Path, fmt: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PACHSYNC), "validate", "--specs", "specs", "--format", fmt],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )


# Each breaks the checkout at `repo` and returns the entry the error must name.
Breaker = Callable[[Path, Path], str]


def _link(name: str, target: Callable[[Path, Path], str]) -> Breaker:
    def apply(repo: Path, outside: Path) -> str:
        os.symlink(target(repo, outside), repo / "specs" / name)
        return f"specs/{name}"
    return apply


def _replace_with_link(name: str, target: Callable[[Path, Path], str]) -> Breaker:
    def apply(repo: Path, outside: Path) -> str:
        path = repo / "specs" / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.symlink(target(repo, outside), path)
        return f"specs/{name}"
    return apply


def _fifo_inside(repo: Path, outside: Path) -> str:
    os.mkfifo(repo / "specs/pipelines/pipe.yaml")
    return "specs/pipelines/pipe.yaml"


def _socket_inside(repo: Path, outside: Path) -> str:
    # AF_UNIX paths are limited to ~108 bytes and pytest's tmp paths are longer: bind through a
    # descriptor of the folder (/proc/self/fd/N/...), which names the same place in a short path.
    folder = os.open(repo / "specs/pipelines", os.O_RDONLY | os.O_DIRECTORY)
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(f"/proc/self/fd/{folder}/sock.yaml")
    finally:
        server.close()  # the socket file stays
        os.close(folder)
    assert stat.S_ISSOCK(os.lstat(repo / "specs/pipelines/sock.yaml").st_mode)
    return "specs/pipelines/sock.yaml"


def _dir_named_yaml(repo: Path, outside: Path) -> str:
    (repo / "specs/pipelines/nested.yaml").mkdir()
    return "specs/pipelines/nested.yaml"


BREAKERS: dict[str, Breaker] = {
    "link-to-token": _link("pipelines/evil.yaml", lambda r, o: str(o / "token")),
    "relative-link-out": _link("pipelines/evil.yaml", lambda r, o: "../../../outside/token"),
    "link-to-dev-zero": _link("pipelines/zero.yaml", lambda r, o: "/dev/zero"),
    "link-to-fifo": _link("pipelines/fifo.yaml", lambda r, o: str(o / "fifo")),
    "link-loop": _link("pipelines/loop.yaml", lambda r, o: "loop.yaml"),
    "dangling-link": _link("pipelines/gone.yaml", lambda r, o: "nowhere.yaml"),
    "link-inside-tree": _link("pipelines/copy.yaml", lambda r, o: "select.yaml"),
    "fifo-inside": _fifo_inside,
    "socket-inside": _socket_inside,
    "directory-named-yaml": _dir_named_yaml,
    "repos-yaml-link": _replace_with_link("repos.yaml", lambda r, o: str(o / "token")),
    "pipelines-dir-link": _replace_with_link("pipelines", lambda r, o: str(o)),
    "pipelines-dir-link-inside": _replace_with_link("pipelines", lambda r, o: "."),
}


@pytest.mark.parametrize("name", sorted(BREAKERS))
def test_an_entry_that_is_not_a_regular_file_is_an_error_naming_it(
    repo: Path, outside: Path, name: str
) -> None:
    where = BREAKERS[name](repo, outside)
    report = check_specs(repo / "specs", root=repo)
    hits = [e for e in report.errors if e.file == where]
    assert hits, [e.format() for e in report.errors]
    assert hits[0].hint and hits[0].line == 0
    assert SECRET not in repr(report)
    if "link" in name:
        assert "symbolic link" in hits[0].message


@pytest.mark.parametrize("name", ["link-to-token", "repos-yaml-link", "pipelines-dir-link",
                                  "link-to-fifo", "link-to-dev-zero", "fifo-inside"])
@pytest.mark.parametrize("fmt", ["text", "json", "azure"])
def test_validate_never_prints_what_a_link_points_at(
    repo: Path, outside: Path, name: str, fmt: str
) -> None:
    where = BREAKERS[name](repo, outside)
    done = _validate(repo, fmt)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert SECRET not in done.stdout + done.stderr
    assert where in done.stdout


def test_specs_folder_itself_a_link_is_an_error(repo: Path, outside: Path) -> None:
    real = repo / "real-specs"
    (repo / "specs").rename(real)
    os.symlink("real-specs", repo / "specs")
    [error] = check_specs(repo / "specs", root=repo).errors
    assert error.file == "specs" and "symbolic link" in error.message
    shutil.copytree(real, outside / "specs")
    (outside / "specs/pipelines/select.yaml").write_text(TOKEN_SPEC)
    (repo / "specs").unlink()
    os.symlink(outside / "specs", repo / "specs")
    for fmt in ("text", "json", "azure"):
        done = _validate(repo, fmt)
        assert done.returncode == 1 and SECRET not in done.stdout + done.stderr, done.stdout


def test_a_nested_specs_path_through_a_linked_folder_is_an_error(repo: Path) -> None:
    (repo / "deploy").mkdir()
    os.symlink("..", repo / "deploy/up")
    errors = check_specs(repo / "deploy/up/specs", root=repo).errors
    assert [e.file for e in errors] == ["deploy/up"], errors


def test_snippets_are_read_without_following_links(repo: Path, outside: Path) -> None:
    from agent.commands.validate import _snippet

    (repo / "specs/pipelines/evil.yaml").symlink_to(outside / "token")
    os.symlink(outside, repo / "specs/elsewhere")
    for file in ("specs/pipelines/evil.yaml", "specs/elsewhere/token", "specs/elsewhere/fifo",
                 "specs/../../outside/token", str(outside / "token")):
        assert _snippet(repo, SpecError(file, 2, "", "m", "h")) == [], file
    select = repo / "specs/pipelines/select.yaml"
    line = select.read_text().splitlines().index("  name: select") + 1
    assert _snippet(repo, SpecError("specs/pipelines/select.yaml", line, "", "m", "h")) == [
        f"  {line:>4} |   name: select"
    ]


def test_the_reader_refuses_a_fifo_or_link_swapped_in_after_the_check(outside: Path) -> None:
    """The race guard itself: the open (O_NOFOLLOW | O_NONBLOCK) and fstat refuse what an
    lstat before it would have accepted."""
    from agent.specs.safefs import Unreadable, _read_capped

    os.symlink("token", outside / "link")
    fd = os.open(outside, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name, words in (("fifo", "FIFO"), ("link", "link")):
            with pytest.raises(Unreadable) as caught:
                _read_capped(fd, name, name, 1 << 20)
            assert words in caught.value.message
        assert _read_capped(fd, "token", "token", 1 << 20) == TOKEN_SPEC.encode()
    finally:
        os.close(fd)


def test_the_agent_stalls_on_a_committed_link_without_reading_it(
    tmp_path: Path, outside: Path
) -> None:
    from helpers.gitops import clone, git, seeded_remote

    from agent.source.fetch import fetch

    files = {str(p.relative_to(ROOT)): p.read_text() for p in (ROOT / "specs").rglob("*.yaml")}
    files |= {str(p.relative_to(ROOT)): p.read_text() for p in (ROOT / "data").rglob("*.*")}
    remote = seeded_remote(tmp_path / "git", files, "specs")
    work = clone(remote, tmp_path / "work")
    os.symlink(outside / "token", work / "specs/pipelines/evil.yaml")
    git(work, "add", "specs/pipelines/evil.yaml")
    git(work, "commit", "-q", "-m", "a link")
    git(work, "push", "-q", "origin", "HEAD:main")
    checkout = fetch(str(remote), "main", tmp_path / "cache")
    assert (checkout.path / "specs/pipelines/evil.yaml").is_symlink()
    with pytest.raises(SpecInvalid) as caught:
        load_desired(checkout.path / "specs", root=checkout.path)
    [error] = caught.value.errors
    assert error.file == "specs/pipelines/evil.yaml" and "symbolic link" in error.message
    assert SECRET not in caught.value.format()
