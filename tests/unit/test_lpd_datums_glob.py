"""Datum globs are GlobFile's globs (Pachyderm lists datums with GlobFile): same matches, and
the glob features GlobFile has (nested alternatives, escapes) work for datums too."""

from __future__ import annotations

import pytest

from localpachd import datums, globs

CASES = [
    ("/*", "/a"), ("/*", "/a/b"), ("/**", "/a/b/c"), ("/?", "/ab"), ("/[!ab]*", "/cherry"),
    ("/[!ab]*", "/apple"), ("/{foo,bar}.txt", "/bar.txt"), ("/(*)_(*).txt", "/x_y.txt"),
    ("/{*.txt,*.csv}", "/a.csv"), ("/{*.txt,*.csv}", "/a.json"), ("/\\*", "/*"),
]


@pytest.mark.parametrize(("pattern", "path"), CASES)
def test_datum_glob_matches_like_glob_file(pattern: str, path: str) -> None:
    assert datums.compile_glob(pattern).matches(path) is globs.glob_match(pattern, path)


def test_datums_over_alternatives_of_globs() -> None:
    files = tuple(datums.RepoFile(p, p, 1) for p in ("/a.csv", "/b.txt", "/c.json"))
    found = datums.glob_matches({"repo": "r", "glob": "/{*.txt,*.csv}"},
                                datums.InputSource("c1", files))
    assert [d.path for d in found] == ["/a.csv", "/b.txt"]


def test_bad_datum_glob_is_a_datum_error() -> None:
    with pytest.raises(datums.DatumError, match="is invalid"):
        datums.compile_glob("/(a")
