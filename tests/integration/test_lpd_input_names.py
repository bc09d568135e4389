"""Pfs input names (issue 12, item 6): CreatePipeline refuses the names Pachyderm 2.7 refuses
(`out`, `.env`, with Pachyderm's text) and the names that cannot be one directory under /pfs
(`..`, `a/b`, NUL, `=`), directly and inside a transaction; nothing is ever written outside the
server's tree; and `safe_join`, the one way worker, jobrun and logs build paths from names,
raises instead of leaving its root.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import grpc
import pytest
from helpers.jobs import state, wait_jobs
from hypothesis import given
from hypothesis import strategies as st
from lpd_pps_helpers import pfs, put
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd.datums import Datum, DatumInput, RepoFile
from localpachd.runtimes import make_runtime
from localpachd.safepath import UnsafePath, safe_join
from localpachd.worker import DatumIO, JobContext, run_datum

# The scratch tree is <data_dir>/scratch/<job>/slot-<k>/pfs: five levels below tmp_path.
ESCAPE = "../../../../../escaped"

HOSTILE = {  # name -> what the error must say
    "out": "input cannot be named out",
    ".env": "input cannot be named .env",
    ESCAPE: "single directory name",
    "../../../var/x": "single directory name",
    "..": "single directory name",
    ".": "single directory name",
    "a/b": "single directory name",
    "/abs": "single directory name",
    "x\x00y": "single directory name",
    "A=B": "'='",
}


def _create(client: Any, name: str, inp: pps_pb2.Input) -> None:
    client.create_pipeline(name, transform=pps_pb2.Transform(cmd=["sh"], stdin=["true"]),
                           input=inp)  # fmt: skip


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_create_pipeline_refuses_hostile_input_names(
    pach_client: Any, tmp_path: Path, name: str
) -> None:
    client = pach_client
    client.create_repo("data")
    put(client, "data", {"/f": "x"})
    with pytest.raises(grpc.RpcError) as err:
        _create(client, "p", pfs("data", "/*", name=name))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert HOSTILE[name] in err.value.details(), err.value.details()
    # nested in a cross: the same rule
    with pytest.raises(grpc.RpcError) as err:
        _create(client, "q", pps_pb2.Input(cross=[pfs("data", "/*", name="ok"),
                                                  pfs("data", "/", name=name)]))  # fmt: skip
    assert HOSTILE[name] in err.value.details(), err.value.details()
    assert list(client.list_pipeline()) == []
    assert not (tmp_path / "escaped").exists()


def test_hostile_name_inside_a_transaction_is_refused(pach_client: Any) -> None:
    client = pach_client
    client.create_repo("data")
    with pytest.raises(grpc.RpcError) as err, client.transaction():
        _create(client, "p", pfs("data", "/*", name=ESCAPE))
    assert "single directory name" in err.value.details()
    assert list(client.list_pipeline()) == []


def test_a_repo_named_out_needs_another_input_name(pach_client: Any) -> None:
    """Pachyderm 2.7 defaults the name to the repo, then refuses `out`; naming it works."""
    client = pach_client
    client.create_repo("out")
    put(client, "out", {"/f": "x"})
    with pytest.raises(grpc.RpcError) as err:
        _create(client, "p", pfs("out", "/*"))
    assert err.value.details().endswith("input cannot be named out")
    client.create_pipeline(
        "p", transform=pps_pb2.Transform(cmd=["sh"], stdin=['cp "$o" /pfs/out/copy']),
        input=pfs("out", "/*", name="o"),
    )  # fmt: skip
    assert state(wait_jobs(client, ["p"])["p"]) == "JOB_SUCCESS"


def test_a_stored_hostile_name_fails_the_datum_without_writing_outside(tmp_path: Path) -> None:
    """A spec stored before names were checked still never makes the worker write outside its
    scratch tree: laying out the datum raises, the datum fails with the reason."""
    f = RepoFile("/f", "h", 1)
    inp = DatumInput(name=ESCAPE, project="default", repo="data", branch="master",
                     commit="c" * 32, path="/f", hash="h", files=(f,))  # fmt: skip
    ctx = JobContext(project="default", pipeline="p", job_id="j" * 32, output_commit="j" * 32,
                     cmd=("sh",), stdin=("true",), datum_tries=1)  # fmt: skip
    root = tmp_path / "a" / "b" / "c" / "d" / "slot"
    res = run_datum(ctx, Datum((inp,)), root, tmp_path / "log", DatumIO(
        make_runtime("subprocess"), lambda _f, dest: dest.write_bytes(b"x"), lambda _src: ("h", 0)))
    assert not res.ok and "leaves" in res.reason, res.reason
    assert not (tmp_path / "escaped").exists()
    assert not list(tmp_path.glob("**/escaped"))


BAD_PARTS = ["..", "../x", "a/../../b", "a/..", "/etc", "x\x00", "", "a//..//..", "./.."]


@pytest.mark.parametrize("part", BAD_PARTS)
def test_safe_join_raises_on_parts_that_leave_or_are_not_names(tmp_path: Path, part: str) -> None:
    with pytest.raises(UnsafePath) as err:
        safe_join(tmp_path, "ok", part)
    assert str(tmp_path) in str(err.value)


def test_safe_join_joins_plain_relative_parts(tmp_path: Path) -> None:
    assert safe_join(tmp_path, "in", "dir/x.txt") == tmp_path / "in" / "dir" / "x.txt"
    assert safe_join(tmp_path, "a.b", "..c", "c..") == tmp_path / "a.b" / "..c" / "c.."
    assert safe_join(tmp_path) == tmp_path


@pytest.mark.fuzz
@given(st.lists(st.text(alphabet="./a\x00b", max_size=8), max_size=4))
def test_safe_join_never_leaves_its_root(parts: list[str]) -> None:
    root = Path("/srv/root")
    try:
        joined = safe_join(root, *parts)
    except UnsafePath:
        return
    norm = os.path.normpath(joined)
    assert norm == str(root) or norm.startswith(str(root) + "/"), (parts, joined)
    assert "\x00" not in str(joined)
