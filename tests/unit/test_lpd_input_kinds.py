"""Input kinds live in one place (`localpachd.datums`): the table agrees with Pachyderm's Input
message, and every walker of the input tree (datums, spec validation and defaults, the pps
servicer) goes through it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd import datums, pps_spec
from localpachd.datums import InputSource, RepoFile


def test_the_kinds_are_the_fields_of_pachyderms_input() -> None:
    assert set(datums.INPUT_KINDS) == set(pps_pb2.Input.DESCRIPTOR.fields_by_name)
    assert set(datums.LEAF_KINDS).isdisjoint(datums.COMPOSITE_KINDS)
    for kind in datums.COMPOSITE_KINDS:
        field = pps_pb2.Input.DESCRIPTOR.fields_by_name[kind]
        assert field.label == field.LABEL_REPEATED, kind


def test_every_kind_computes_datums() -> None:
    assert set(datums.DATUMS_OF) == set(datums.INPUT_KINDS)


def _lister(pfs: Mapping[str, Any]) -> InputSource:
    return InputSource("c-" + str(pfs["repo"]), (RepoFile("/a", "h1"), RepoFile("/b", "h2")))


def _pfs(repo: str, **extra: str) -> dict[str, Any]:
    return {"pfs": {"repo": repo, "glob": "/*", **extra}}


@pytest.mark.parametrize(("kind", "count"), [("cross", 4), ("union", 4), ("join", 2),
                                             ("group", 1)])  # fmt: skip
def test_each_composite_dispatches(kind: str, count: int) -> None:
    extra = {"join": {"join_on": "$1"}, "group": {"group_by": "x"}}.get(kind, {})
    tree = {kind: [_pfs("r1", **extra), _pfs("r2", **extra)]}
    if kind == "join":  # rows join on the captured name
        tree = {kind: [_pfs("r1", glob="/(*)", join_on="$1"), _pfs("r2", glob="/(*)",
                                                                    join_on="$1")]}  # fmt: skip
    assert len(datums.compute_datums(tree, _lister)) == count


def test_cron_reads_as_a_pfs_input_on_master_with_glob_star() -> None:
    cron = {"cron": {"name": "tick", "spec": "@every 1m", "repo": "p_tick", "project": "pj"}}
    found = datums.compute_datums(cron, _lister)
    assert [(d.inputs[0].name, d.inputs[0].repo, d.inputs[0].branch, d.inputs[0].path,
             d.inputs[0].glob) for d in found] == [
        ("tick", "p_tick", "master", "/a", "/*"), ("tick", "p_tick", "master", "/b", "/*")]
    assert datums.pfs_inputs({"cross": [cron, _pfs("r")]})[0]["repo"] == "p_tick"


def test_mixed_kinds_are_refused_by_name() -> None:
    with pytest.raises(datums.DatumError, match="exactly one of pfs/cron/cross/union/join/group"):
        datums.compute_datums({"pfs": {"repo": "a"}, "cross": [_pfs("b")]}, _lister)


def test_pfs_inputs_walks_every_composite() -> None:
    tree: dict[str, Any] = _pfs("leaf")
    for i, kind in enumerate(datums.COMPOSITE_KINDS):
        tree = {kind: [tree, _pfs(f"r{i}")]}
    repos = sorted(str(p["repo"]) for p in datums.pfs_inputs(tree))
    assert repos == sorted(["leaf", *(f"r{i}" for i in range(len(datums.COMPOSITE_KINDS)))])


def test_spec_validation_names_every_kind() -> None:
    req = pps_pb2.CreatePipelineRequest(input=pps_pb2.Input())
    req.pipeline.name = "p"
    req.transform.cmd.append("true")
    with pytest.raises(pps_spec.SpecInvalid) as exc:
        pps_spec.validate(req)
    assert "exactly one of " + ", ".join(datums.INPUT_KINDS) + " must be set" in str(exc.value)
