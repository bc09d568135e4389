"""Unit tests of localpachd.datums: globs, cross/union/join/group, datum IDs and hashes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from localpachd.datums import (
    Datum,
    InputSource,
    RepoFile,
    check_duplicate_outputs,
    clean_glob,
    compute_datums,
    datum_hash,
    datum_id,
)

REPOS: dict[str, list[str]] = {
    "a": ["/1.txt", "/2.txt", "/dir/x.csv", "/dir/sub/y.csv"],
    "b": ["/p.txt", "/q.txt"],
    "left": ["/k1_l.txt", "/k2_l.txt", "/k3_l.txt"],
    "right": ["/k1_r.txt", "/k2_r.txt", "/k2_rr.txt", "/k4_r.txt"],
}


def lister(pfs: Mapping[str, Any]) -> InputSource:
    files = tuple(RepoFile(p, "h" + p) for p in REPOS[pfs["repo"]])
    return InputSource(commit="c" * 32, files=files)


def pfs(repo: str, glob: str, **kw: Any) -> dict[str, Any]:
    return {"pfs": {"repo": repo, "name": kw.pop("name", repo), "glob": glob, **kw}}


def paths(ds: list[Datum]) -> list[tuple[str, ...]]:
    return [tuple(f"{i.name}:{i.path}" for i in d.inputs) for d in ds]


def test_clean_glob() -> None:
    assert clean_glob("*") == "/*"
    assert clean_glob("/*/") == "/*"
    assert clean_glob("") == "/"
    assert clean_glob("//a//*") == "/a/*"


def test_root_glob_is_one_datum_with_every_file() -> None:
    [d] = compute_datums(pfs("a", "/"), lister)
    assert d.inputs[0].path == "/"
    assert len(d.inputs[0].files) == 4


def test_star_matches_files_and_directories() -> None:
    ds = compute_datums(pfs("a", "/*"), lister)
    assert paths(ds) == [("a:/1.txt",), ("a:/2.txt",), ("a:/dir/",)]
    assert {f.path for f in ds[2].inputs[0].files} == {"/dir/x.csv", "/dir/sub/y.csv"}


def test_depth_two_and_doublestar() -> None:
    assert paths(compute_datums(pfs("a", "/*/*"), lister)) == [("a:/dir/sub/",), ("a:/dir/x.csv",)]
    deep = paths(compute_datums(pfs("a", "/**.csv"), lister))
    assert deep == [("a:/dir/sub/y.csv",), ("a:/dir/x.csv",)]


def test_cross_is_cartesian_product() -> None:
    ds = compute_datums({"cross": [pfs("a", "/*.txt"), pfs("b", "/*")]}, lister)
    assert len(ds) == 4
    assert paths(ds)[0] == ("a:/1.txt", "b:/p.txt")


def test_union_concatenates() -> None:
    ds = compute_datums({"union": [pfs("a", "/*.txt"), pfs("b", "/*")]}, lister)
    assert paths(ds) == [("a:/1.txt",), ("a:/2.txt",), ("b:/p.txt",), ("b:/q.txt",)]


def join_input(outer_left: bool = False, outer_right: bool = False) -> dict[str, Any]:
    return {"join": [
        pfs("left", "/(*)_l.txt", join_on="$1", outer_join=outer_left),
        pfs("right", "/(*)_*.txt", join_on="$1", outer_join=outer_right),
    ]}  # fmt: skip


def test_inner_join_matches_keys() -> None:
    ds = compute_datums(join_input(), lister)
    assert paths(ds) == [
        ("left:/k1_l.txt", "right:/k1_r.txt"),
        ("left:/k2_l.txt", "right:/k2_r.txt"),
        ("left:/k2_l.txt", "right:/k2_rr.txt"),
    ]


def test_outer_join_keeps_unmatched_rows_of_outer_inputs() -> None:
    left = paths(compute_datums(join_input(outer_left=True), lister))
    assert ("left:/k3_l.txt",) in left and len(left) == 4
    both = paths(compute_datums(join_input(True, True), lister))
    assert ("left:/k3_l.txt",) in both and ("right:/k4_r.txt",) in both and len(both) == 5


def test_group_makes_one_datum_per_key() -> None:
    ds = compute_datums({"group": [
        pfs("left", "/(*)_l.txt", group_by="$1"),
        pfs("right", "/(*)_*.txt", group_by="$1"),
    ]}, lister)  # fmt: skip
    assert paths(ds) == [
        ("left:/k1_l.txt", "right:/k1_r.txt"),
        ("left:/k2_l.txt", "right:/k2_r.txt", "right:/k2_rr.txt"),
        ("left:/k3_l.txt",),
        ("right:/k4_r.txt",),
    ]


def test_datum_id_and_hash_are_blake2b_256_and_depend_on_the_right_things() -> None:
    [d1, d2] = compute_datums(pfs("b", "/*"), lister)
    assert len(d1.id) == 64 and d1.id != d2.id
    assert d1.id == datum_id(d1.inputs)
    assert d1.hash("s1") != d1.hash("s2")
    changed = d1.inputs[0].__class__(**{**d1.inputs[0].__dict__, "hash": "other"})
    assert datum_id((changed,)) == d1.id  # the ID ignores content
    assert datum_hash((changed,), "s1") != d1.hash("s1")  # the hash does not


def test_duplicate_output_paths_give_pachyderms_message() -> None:
    assert check_duplicate_outputs({"d1": ["/a"], "d2": ["/b"]}) is None
    msg = check_duplicate_outputs({"d1": ["/a"], "d2": ["/a"]})
    assert msg is not None and msg.startswith("duplicate path output by different datums (/a from")
    assert "collision" in (check_duplicate_outputs({"d1": ["/a"], "d2": ["/a/b"]}) or "")


def test_bad_input_rejected() -> None:
    from localpachd.datums import DatumError

    with pytest.raises(DatumError):
        compute_datums({"pfs": {"repo": "a", "glob": "/"}, "cross": [pfs("b", "/")]}, lister)
