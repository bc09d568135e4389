"""Unit tests of localpachd.pps_spec: Pachyderm's defaults, validation and Details."""

from __future__ import annotations

import pytest
from python_pachyderm.proto.v2.pfs import pfs_pb2
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd import pps_spec
from localpachd.pps_spec import SpecInvalid


def req(name: str = "model", **kw: object) -> pps_pb2.CreatePipelineRequest:
    kw.setdefault("transform", pps_pb2.Transform(cmd=["sh"]))
    kw.setdefault("input", pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="data", glob="*")))
    return pps_pb2.CreatePipelineRequest(
        pipeline=pps_pb2.Pipeline(name=name, project=pfs_pb2.Project(name="")), **kw
    )


def test_defaults_are_filled_like_pachyderm() -> None:
    spec = pps_spec.with_defaults(req(update=True, reprocess=True))
    assert spec.pipeline.project.name == "default"
    assert spec.transform.image == "ubuntu:20.04"
    assert spec.output_branch == "master"
    assert spec.datum_tries == 3
    assert spec.reprocess_spec == "until_success"
    p = spec.input.pfs
    assert (p.name, p.branch, p.repo_type, p.project, p.glob) == (
        "data", "master", "user", "default", "/*",
    )  # fmt: skip
    assert not spec.update and not spec.reprocess


def test_explicit_values_are_kept() -> None:
    spec = pps_spec.with_defaults(
        req(
            transform=pps_pb2.Transform(image="me/img:1", cmd=["sh"]),
            datum_tries=7,
            reprocess_spec="every_job",
            description="d",
            metadata=pps_pb2.Metadata(annotations={"k": "v"}),
        )
    )
    assert spec.transform.image == "me/img:1" and spec.datum_tries == 7
    details = pps_spec.details_of(spec)
    assert details.description == "d" and details.metadata.annotations["k"] == "v"
    assert details.reprocess_spec == "every_job" and details.datum_tries == 7


def test_composite_children_sorted_by_name() -> None:
    cross = pps_pb2.Input(cross=[
        pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="zeta", glob="/")),
        pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="alpha", glob="/")),
    ])  # fmt: skip
    spec = pps_spec.with_defaults(req(input=cross))
    assert [c.pfs.name for c in spec.input.cross] == ["alpha", "zeta"]


@pytest.mark.parametrize(
    ("kw", "text"),
    [
        ({"name": "x" * 52}, "at most 51"),
        ({"name": "_bad"}, "alphanumeric"),
        ({"reprocess_spec": "sometimes"}, "ReprocessSpec must be one of"),
        ({"input": pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="d"))}, "glob"),
        ({"input": pps_pb2.Input(pfs=pps_pb2.PFSInput(glob="/"))}, "repo"),
        (
            {"input": pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="d", glob="/", commit="abc"))},
            "commit",
        ),
        (
            {
                "input": pps_pb2.Input(
                    cross=[
                        pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="d", glob="/")),
                        pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="d", glob="/*")),
                    ]
                )
            },  # fmt: skip
            "used more than once",
        ),
        (
            {
                "input": pps_pb2.Input(
                    pfs=pps_pb2.PFSInput(repo="d", glob="/"),
                    cross=[pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="e", glob="/"))],
                )
            },  # fmt: skip
            "exactly one",
        ),
    ],
)
def test_validation_errors(kw: dict[str, object], text: str) -> None:
    name = str(kw.pop("name", "p"))
    with pytest.raises(SpecInvalid, match=text):
        pps_spec.validate(req(name, **kw))


def test_transform_required() -> None:
    r = req()
    r.ClearField("transform")
    with pytest.raises(SpecInvalid, match="transform"):
        pps_spec.validate(r)


def test_union_may_repeat_names_and_parallelism_is_capped() -> None:
    union = pps_pb2.Input(union=[
        pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="d", glob="/a")),
        pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="d", glob="/b")),
    ])  # fmt: skip
    pps_spec.validate(req(input=union))
    spec = pps_spec.with_defaults(req(parallelism_spec=pps_pb2.ParallelismSpec(constant=8)))
    assert pps_spec.parallelism(spec, cap=2) == 2
    assert pps_spec.parallelism(pps_spec.with_defaults(req()), cap=2) == 1


@pytest.mark.parametrize("name", ["p\n", "p\r\n", "p\x00", "p/q", "p q", "é"])
def test_pipeline_names_with_a_trailing_newline_or_odd_characters_are_refused(name: str) -> None:
    """The name becomes a directory of logs and a repo: `$` also matched before a final newline."""
    with pytest.raises(SpecInvalid, match="alphanumeric"):
        pps_spec.validate(req(name))


@pytest.mark.parametrize(("name", "text"), [
    ("out", "^input cannot be named out$"), (".env", "^input cannot be named .env$"),
    ("..", "single directory name"), ("a/b", "single directory name"),
    ("x\x00", "single directory name"), ("a=b", "'='"),
])  # fmt: skip
def test_input_names_pachyderm_or_the_scratch_tree_cannot_take(name: str, text: str) -> None:
    inp = pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="d", glob="/", name=name))
    with pytest.raises(SpecInvalid, match=text):
        pps_spec.validate(req(input=inp))
    union = pps_pb2.Input(union=[pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="d", glob="/")), inp])
    with pytest.raises(SpecInvalid, match=text):
        pps_spec.validate(req(input=union))
    repo_named = pps_pb2.Input(pfs=pps_pb2.PFSInput(repo=name, glob="/"))
    if name in pps_spec.RESERVED_INPUT_NAMES:  # the name defaults to the repo
        with pytest.raises(SpecInvalid, match=text):
            pps_spec.validate(req(input=repo_named))
