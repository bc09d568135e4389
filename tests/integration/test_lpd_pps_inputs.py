"""Input types on a real server: plain sh with /pfs paths, union, join (inner/outer), group.

Each combination is checked twice: the hypothetical datums of ListDatum(input=...) and the
datums a real pipeline ran (its output records what every datum saw).
"""

from __future__ import annotations

from typing import Any

import pytest
from lpd_pps_helpers import counts, last_job, pfs, put, read_repo, sh_pipeline, state
from python_pachyderm.proto.v2.pps import pps_pb2

# Each datum writes one file named after its datum ID listing the input files it sees.
RECORD = 'cd /pfs && find . -path ./out -prune -o -type f -print | sort > "/pfs/out/$PACH_DATUM_ID"'


@pytest.fixture
def client(pach_client: Any) -> Any:
    pach_client.create_repo("left")
    pach_client.create_repo("right")
    put(pach_client, "left", {"/k1_l.txt": "l1", "/k2_l.txt": "l2", "/k3_l.txt": "l3"})
    put(pach_client, "right", {"/k1_r.txt": "r1", "/k2_r.txt": "r2", "/k4_r.txt": "r4"})
    return pach_client


def seen(client: Any, pipeline: str) -> list[list[str]]:
    """What each datum saw, as sorted lists of ./<input>/<path>."""
    assert state(last_job(client, pipeline)) == "JOB_SUCCESS"
    return sorted(sorted(v.split()) for v in read_repo(client, pipeline).values())


def hypothetical(client: Any, inp: pps_pb2.Input) -> list[list[str]]:
    return sorted(sorted(f"{f.file.commit.branch.repo.name}:{f.file.path}" for f in d.data)
                  for d in client.list_datum(input=inp))  # fmt: skip


def join(outer_left: bool = False) -> pps_pb2.Input:
    return pps_pb2.Input(join=[
        pfs("left", "/(*)_l.txt", join_on="$1", outer_join=outer_left),
        pfs("right", "/(*)_r.txt", join_on="$1"),
    ])  # fmt: skip


def test_plain_sh_pipeline_with_stdin_and_pfs_paths(client: Any) -> None:
    sh_pipeline(
        client, "count", pfs("left", "/"),
        "cp /pfs/left/* /pfs/out/",
        "ls /pfs/left | wc -l | tr -d ' ' > /pfs/out/count",
        'echo "$left" > /pfs/out/where',
    )  # fmt: skip
    assert counts(last_job(client, "count")) == (1, 0, 0, 1)
    out = read_repo(client, "count")
    assert out["/count"] == "3\n" and out["/k1_l.txt"] == "l1"
    assert out["/where"].strip().endswith("/pfs/left")


def test_union_concatenates_datums(client: Any) -> None:
    inp = pps_pb2.Input(union=[pfs("left", "/*"), pfs("right", "/*")])
    assert len(hypothetical(client, inp)) == 6
    sh_pipeline(client, "u", inp, RECORD)
    assert seen(client, "u") == [
        ["./left/k1_l.txt"], ["./left/k2_l.txt"], ["./left/k3_l.txt"],
        ["./right/k1_r.txt"], ["./right/k2_r.txt"], ["./right/k4_r.txt"],
    ]  # fmt: skip


def test_inner_join_pairs_matching_keys(client: Any) -> None:
    assert hypothetical(client, join()) == [
        ["left:/k1_l.txt", "right:/k1_r.txt"], ["left:/k2_l.txt", "right:/k2_r.txt"],
    ]  # fmt: skip
    sh_pipeline(client, "j", join(), RECORD)
    assert seen(client, "j") == [
        ["./left/k1_l.txt", "./right/k1_r.txt"], ["./left/k2_l.txt", "./right/k2_r.txt"],
    ]  # fmt: skip


def test_outer_join_keeps_unmatched_rows_of_the_outer_input(client: Any) -> None:
    sh_pipeline(client, "oj", join(outer_left=True), RECORD)
    assert seen(client, "oj") == [
        ["./left/k1_l.txt", "./right/k1_r.txt"], ["./left/k2_l.txt", "./right/k2_r.txt"],
        ["./left/k3_l.txt"],
    ]  # fmt: skip


def test_group_makes_one_datum_per_key(client: Any) -> None:
    put(client, "right", {"/k1_r2.txt": "r1b"})
    inp = pps_pb2.Input(group=[
        pfs("left", "/(*)_l.txt", group_by="$1"),
        pfs("right", "/(*)_r*.txt", group_by="$1"),
    ])  # fmt: skip
    assert len(hypothetical(client, inp)) == 4
    sh_pipeline(client, "g", inp, RECORD)
    assert seen(client, "g") == [
        ["./left/k1_l.txt", "./right/k1_r.txt", "./right/k1_r2.txt"],
        ["./left/k2_l.txt", "./right/k2_r.txt"],
        ["./left/k3_l.txt"],
        ["./right/k4_r.txt"],
    ]


def test_cross_and_env_vars(client: Any) -> None:
    inp = pps_pb2.Input(cross=[pfs("left", "/k1*"), pfs("right", "/*")])
    line = 'echo "$left $right $left_COMMIT $PPS_PIPELINE_NAME" > "/pfs/out/$PACH_DATUM_ID"'
    sh_pipeline(client, "x", inp, line)
    assert counts(last_job(client, "x")) == (3, 0, 0, 3)
    lines = sorted(read_repo(client, "x").values())
    assert all(line.split()[0].endswith("/pfs/left/k1_l.txt") for line in lines)
    assert sorted(line.split()[1].rsplit("/", 1)[1] for line in lines) == [
        "k1_r.txt", "k2_r.txt", "k4_r.txt",
    ]  # fmt: skip
    assert all(line.split()[3] == "x" for line in lines)
