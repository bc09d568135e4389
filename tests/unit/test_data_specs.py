"""Reading the data specs/repos.yaml declares (agent.specs.data through check_specs), on real
files in a temp checkout: files are read like specs (regular files inside the checkout, never
through a link, bounded) and every problem is a SpecError at the declaring line of repos.yaml,
or at the line of the data file for a repeated value.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.specs import check_specs
from agent.specs import data as specdata

PIPELINE = """\
pipeline:
  name: p
transform:
  image: example.org/x:1.0
  cmd: [sh, -c, "true"]
input:
  pfs: {repo: r, glob: /*}
"""


def _checkout(tmp_path: Path, data_yaml: str, files: dict[str, str] | None = None) -> Path:
    root = tmp_path / "repo"
    (root / "specs" / "pipelines").mkdir(parents=True)
    (root / "specs" / "pipelines" / "p.yaml").write_text(PIPELINE)
    (root / "specs" / "repos.yaml").write_text("repos:\n  - name: r\n    data:\n" + data_yaml)
    for rel, text in (files or {"data/x.csv": "1,2\n"}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _errors(root: Path) -> list[str]:
    return [e.format() for e in check_specs(root / "specs", root=root).errors]


def test_declared_files_are_read_with_defaults(tmp_path: Path) -> None:
    root = _checkout(tmp_path, "      - path: data/x.csv\n      - path: data/g.txt\n"
                     "        split: lines\n      - path: ./data/x.csv\n        to: /in/\n",
                     {"data/x.csv": "1,2\n", "data/g.txt": "a b\n\n0.5\r\n"})
    report = check_specs(root / "specs", root=root)
    assert report.errors == ()
    assert report.state is not None
    [repo] = report.state.repos
    assert repo.data is not None and repo.data.dirs == ("/g.txt/",)
    got = {f.path: (f.content, f.source) for f in repo.data.files}
    long_name = "/g.txt/line-" + __import__("hashlib").sha256(b"a b").hexdigest()[:16]
    assert got == {"/x.csv": (b"1,2\n", "data/x.csv"), "/in/x.csv": (b"1,2\n", "data/x.csv"),
                   long_name: (b"a b\n", "data/g.txt:1"), "/g.txt/0.5": (b"0.5\n", "data/g.txt:3")}


@pytest.mark.parametrize("path, words", [
    ("/etc/passwd", "is an absolute path"), ("../outside.csv", "goes up with '..'"),
    ("data/../../x", "goes up with '..'"), ("data\\\\x.csv", "backslash"),
    ("data/", "names a folder"), ("data/missing.csv", "no such file in the checkout"),
    ("data", "is a directory, not a regular file"),
])
def test_bad_paths_are_errors_at_the_declaring_line(tmp_path: Path, path: str,
                                                    words: str) -> None:
    root = _checkout(tmp_path, f'      - path: "{path}"\n')
    [error] = _errors(root)
    assert error.startswith("specs/repos.yaml:4: repos[0].data[0].path:"), error
    assert words in error, error


def test_links_are_never_followed_even_inside_the_checkout(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cr3t\n")
    root = _checkout(tmp_path, "      - path: data/link.csv\n      - path: linked/x.csv\n"
                     "      - path: data/inside.csv\n")
    os.symlink(secret, root / "data/link.csv")
    os.symlink(root / "data", root / "linked")
    os.symlink("x.csv", root / "data/inside.csv")
    errors = _errors(root)
    assert len(errors) == 3 and all("symbolic link" in e for e in errors), errors
    assert not any("s3cr3t" in e for e in errors)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    root = _checkout(tmp_path, "      - path: data/fifo\n")
    os.mkfifo(root / "data/fifo")
    [error] = _errors(root)
    assert "is a FIFO, not a regular file" in error


def test_size_and_count_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(specdata, "MAX_DATA_FILE_BYTES", 10)
    monkeypatch.setattr(specdata, "MAX_DATA_FILES", 3)
    root = _checkout(tmp_path, "      - path: data/big.csv\n      - path: data/g.txt\n"
                     "        split: lines\n", {"data/big.csv": "x" * 11, "data/g.txt": "1\n2\n"})
    assert any("larger than 10 bytes" in e and "data[0]" in e for e in _errors(root))
    monkeypatch.setattr(specdata, "MAX_DATA_FILE_BYTES", 100)
    (root / "data/g.txt").write_text("1\n2\n3\n4\n")
    errors = _errors(root)
    assert len(errors) == 1 and "more than 3 repo files" in errors[0], errors


def test_a_repeated_line_is_an_error_at_its_line(tmp_path: Path) -> None:
    root = _checkout(tmp_path, "      - path: data/c.txt\n        split: lines\n",
                     {"data/c.txt": "0.5\n2.0\n0.5 \n"})
    assert _errors(root) == ["data/c.txt:3: repeats line 1 ('0.5'): a line file is named by its "
                             "content, so both would be one file (hint: remove one of the two "
                             "lines)"]


@pytest.mark.parametrize("entries", [
    "      - path: data/x.csv\n      - path: other/x.csv\n",  # both /x.csv
    "      - path: data/x.csv\n        to: /a\n      - path: data/x.csv\n        to: /a/b\n",
    "      - path: data/x.csv\n        to: /a\n      - path: data/x.csv\n        to: /a/\n"
    "        split: lines\n",
])
def test_overlapping_destinations_are_errors(tmp_path: Path, entries: str) -> None:
    root = _checkout(tmp_path, entries, {"data/x.csv": "1\n", "other/x.csv": "2\n"})
    [error] = _errors(root)
    assert "repos[0].data[1].to" in error and "overlaps" in error, error


def test_data_paths_are_relative_to_the_folder_holding_specs(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    _checkout(tmp_path, "      - path: data/x.csv\n")
    (root / "deploy").mkdir()
    (root / "specs").rename(root / "deploy" / "specs")
    [error] = [e.format() for e in check_specs(root / "deploy/specs", root=root).errors]
    assert "data/x.csv: no such file" in error  # deploy/data/x.csv, not data/x.csv
    (root / "deploy/data").mkdir()
    (root / "data/x.csv").rename(root / "deploy/data/x.csv")
    assert check_specs(root / "deploy/specs", root=root).errors == ()
    assert any("outside the checkout" in e.format()
               for e in check_specs(root / "deploy/specs", root=root / "deploy/specs").errors)


def test_the_desired_state_cache_is_bounded_by_the_data_it_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent import sync

    monkeypatch.setattr(sync, "_DESIRED_CACHE", {})
    monkeypatch.setattr(sync, "_DESIRED_CACHE_DATA", 10)
    roots = [_checkout(tmp_path / str(i), "      - path: data/x.csv\n",
                       {"data/x.csv": "123456\n"}) for i in range(2)]
    first = sync._load_cached(roots[0], "c1", "specs")
    assert sync._load_cached(roots[0], "c1", "specs") is first  # a poll of the same head
    sync._load_cached(roots[1], "c1", "specs")  # 7 + 7 bytes > 10: the first is evicted
    assert list(sync._DESIRED_CACHE) == [(str(roots[1]), "c1", "specs")]
