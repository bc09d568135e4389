"""localpachd.paths and localpachd.globs: Pachyderm path cleaning (hostile paths refused) and
glob semantics."""

from __future__ import annotations

import pytest

from localpachd.errors import InvalidArgument
from localpachd.globs import clean_glob, glob_match
from localpachd.paths import clean_path, parent_dirs


@pytest.mark.parametrize(("raw", "clean"), [
    ("a", "/a"), ("/a/b", "/a/b"), ("a//b/", "/a/b"), ("/./a/./b", "/a/b"),
    ("/a/../b", "/b"), ("", "/"), ("/", "/"), ("a b/c.txt", "/a b/c.txt"),
])
def test_clean_path_normalises(raw: str, clean: str) -> None:
    assert clean_path(raw) == clean


@pytest.mark.parametrize("hostile", [
    "..", "../etc/passwd", "/a/../../b", "a\x00b", "a\nb", "/../../../../tmp/x", "\x7f",
])
def test_clean_path_refuses_hostile(hostile: str) -> None:
    with pytest.raises(InvalidArgument):
        clean_path(hostile)


def test_parent_dirs() -> None:
    assert parent_dirs("/a/b/c") == ["/a", "/a/b"]
    assert parent_dirs("/a") == []


@pytest.mark.parametrize(("pattern", "path", "expected"), [
    ("/", "/", True),
    ("/*", "/a", True), ("/*", "/a/b", False), ("*", "/a", True),
    ("/*/*", "/a/b", True), ("/*/*", "/a", False),
    ("/**", "/a/b/c", True), ("/a/**/z", "/a/b/c/z", True), ("/**.csv", "/x/y.csv", True),
    ("/?", "/a", True), ("/?", "/ab", False), ("/?", "//", False),
    ("/[ab]*", "/apple", True), ("/[ab]*", "/cherry", False),
    ("/[!ab]*", "/cherry", True), ("/[!ab]*", "/apple", False), ("/[a-c]", "/b", True),
    ("/{foo,bar}.txt", "/bar.txt", True), ("/{foo,bar}.txt", "/baz.txt", False),
    ("/(*)_(*).txt", "/x_y.txt", True), ("/a.b", "/aXb", False),
    ("/\\*", "/*", True), ("/\\*", "/a", False),
])
def test_glob_semantics(pattern: str, path: str, expected: bool) -> None:
    assert glob_match(pattern, path) is expected


def test_clean_glob() -> None:
    assert clean_glob("*") == "/*"
    assert clean_glob("/a//*/") == "/a/*"
    with pytest.raises(InvalidArgument):
        clean_glob("/a\x00")
