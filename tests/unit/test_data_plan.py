"""The pure data planner (agent.plan.data): desired files from git vs what pachsync wrote.

Hand-written DesiredState/LiveData values, no cluster: which files are added, changed,
restored, deleted or left alone, what a change re-runs (datum estimates from the globs), the
manifest codec, and properties that hold for any input (never delete a file we did not write or
one someone else changed; planning again after the write finds nothing to do).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.cluster.datamodel import (
    LiveData,
    Manifest,
    encode_manifest,
    parse_manifest,
    pending_description,
    pending_source,
)
from agent.plan.data import plan_data
from agent.plan.model import Policy
from agent.specs import DesiredState, PipelineSpec, RepoData, RepoSpec
from agent.specs.data import DataFile, make_file
from agent.util.globs import datum_roots, glob_matches
from agent.util.linefiles import line_name

POLICY = Policy(source_id="git@example:ops.git#main:specs", commit="c0ffee" * 6 + "abcd")
C = ["0.031", "0.125", "0.500", "2.000"]
GAMMA = ["0.001", "0.004", "0.016"]


def _lines(folder: str, values: list[str]) -> list[DataFile]:
    return [make_file(f"/{folder}/{v}", f"{v}\n".encode(), f"data/{folder}:{i}")
            for i, v in enumerate(values, 1)]


def _repo(name: str, files: list[DataFile], dirs: tuple[str, ...] = ()) -> RepoSpec:
    return RepoSpec(name, data=RepoData(tuple(sorted(files, key=lambda f: f.path)), dirs))


def _pipeline(name: str, node: dict[str, Any], inputs: tuple[str, ...]) -> PipelineSpec:
    return PipelineSpec(name, f"specs/pipelines/{name}.yaml",
                        {"pipeline": {"name": name}, "input": node}, inputs)


MODEL = _pipeline("model", {"cross": [
    {"pfs": {"repo": "split", "glob": "/train.csv"}},
    {"pfs": {"name": "c", "repo": "parameters", "glob": "/c_parameters.txt/*"}},
    {"pfs": {"name": "gamma", "repo": "parameters", "glob": "/gamma_parameters.txt/*"}}]},
    ("split", "parameters"))
SPLIT = _pipeline("split", {"pfs": {"repo": "raw_data", "glob": "/"}}, ("raw_data",))
TEST = _pipeline("test", {"cross": [{"pfs": {"repo": "split", "glob": "/test.csv"}},
                                    {"pfs": {"repo": "model", "glob": "/*"}}]}, ("split", "model"))
DIRS = ("/c_parameters.txt/", "/gamma_parameters.txt/")


def _desired(c: list[str], gamma: list[str] = GAMMA, raw: bytes = b"1,2\n") -> DesiredState:
    params = _repo("parameters", _lines("c_parameters.txt", c)
                   + _lines("gamma_parameters.txt", gamma), DIRS)
    raw_repo = _repo("raw_data", [make_file("/iris.csv", raw, "data/iris.csv")])
    return DesiredState((raw_repo, params), (SPLIT, MODEL, TEST))


def _written(desired: DesiredState, **live: Any) -> dict[tuple[str, str], LiveData]:
    """Live state right after pachsync wrote `desired` (optionally changed by `live`)."""
    out = {}
    for r in desired.repos:
        assert r.data is not None
        files = {f.path: f.digest for f in r.data.files}
        out[("default", r.name)] = LiveData(r.name, head="h1", ours="h1",
                                            manifest=Manifest(POLICY.source_id, "x", files),
                                            **live.get(r.name, {}))
    return out


def test_nothing_written_yet_adds_every_file_and_reruns_everything() -> None:
    plan = plan_data(_desired(C), {}, POLICY)
    assert [(r.repo, r.count("add")) for r in plan.repos] == [("raw_data", 1), ("parameters", 7)]
    assert {x.pipeline: (x.direct, x.datums) for x in plan.reruns} == {
        "split": (True, 1), "model": (True, 12), "test": (False, None)}


@pytest.mark.parametrize("c_after, added, deleted, datums", [
    (["0.010", *C], ["/c_parameters.txt/0.010"], [], 3),  # inserted at the top: 1 x 3 gamma
    ([*C, "8.000"], ["/c_parameters.txt/8.000"], [], 3),  # appended
    (list(reversed(C)), [], [], None),  # reordered: nothing to do
    (C[1:], [], ["/c_parameters.txt/0.031"], None),  # removed: deleted, no datum re-runs...
])
def test_line_files_change_only_for_the_lines_that_changed(
        c_after: list[str], added: list[str], deleted: list[str], datums: int | None) -> None:
    plan = plan_data(_desired(c_after), _written(_desired(C)), POLICY)
    raw, params = plan.repos
    assert raw.write is None and raw.unchanged == 1
    assert [c.path for c in params.changes if c.action == "add"] == added
    assert [c.path for c in params.changes if c.action == "delete"] == deleted
    if not (added or deleted):
        assert params.write is None and not plan.has_changes and plan.reruns == ()
        return
    model = next(x for x in plan.reruns if x.pipeline == "model")
    assert model.datums == (datums if datums is not None else 0)  # a deleted C: 0 re-run
    assert [x.pipeline for x in plan.reruns] == ["model", "test"]


def test_changed_content_and_hand_edits_are_written_back() -> None:
    desired = _desired(C, raw=b"new\n")
    live = _written(_desired(C), parameters={
        "changed": frozenset({"/c_parameters.txt/0.125"}),
        "deleted": frozenset({"/gamma_parameters.txt/0.001"})})
    plan = plan_data(desired, live, POLICY)
    raw, params = plan.repos
    assert [(c.path, c.action) for c in raw.changes] == [("/iris.csv", "change")]
    assert sorted((c.path, c.action) for c in params.changes) == [
        ("/c_parameters.txt/0.125", "restore"), ("/gamma_parameters.txt/0.001", "restore")]
    assert params.write is not None and dict(params.write.puts)["/c_parameters.txt/0.125"] == \
        b"0.125\n"
    # model: 4 C x 3 gamma, one C and one gamma changed: 12 - 3 x 2 unchanged = 6
    assert {x.pipeline: x.datums for x in plan.reruns if x.direct} == {"split": 1, "model": 6}


def test_files_we_did_not_write_are_never_deleted_and_are_reported() -> None:
    listing = {"/c_parameters.txt/0000000000000000": "ab", "/c_parameters.txt/0.010": "cd",
               "/notes.txt": "ef"}
    live = _written(_desired(C), parameters={"listing": listing})
    plan = plan_data(_desired(["0.010", *C[1:]]), live, POLICY)
    params = plan.repos[1]
    assert sorted((c.path, c.action) for c in params.changes) == [
        ("/c_parameters.txt/0.010", "replace"), ("/c_parameters.txt/0.031", "delete")]
    assert params.foreign == ("/c_parameters.txt/0000000000000000",)  # /notes.txt: elsewhere
    assert any("did not write" in w and "0000000000000000" in w for w in plan.warnings)


def test_a_file_someone_changed_after_us_is_theirs_once_git_drops_it() -> None:
    live = _written(_desired(C), parameters={"changed": frozenset({"/c_parameters.txt/0.031"}),
                                             "deleted": frozenset({"/c_parameters.txt/0.125"})})
    plan = plan_data(_desired(C[2:]), live, POLICY)
    params = plan.repos[1]
    assert params.changes == () and params.kept == ("/c_parameters.txt/0.031",)
    assert params.write is None and any("left alone" in w for w in plan.warnings)


def test_an_interrupted_write_is_finished_even_without_changes() -> None:
    live = _written(_desired(C), parameters={"open_commit": "open1"})
    plan = plan_data(_desired(C), live, POLICY)
    params = plan.repos[1]
    assert params.changes == () and params.write is not None and params.write.into == "open1"
    assert parse_manifest(params.write.description) == Manifest(
        POLICY.source_id, POLICY.commit, {f.path: f.digest for f in _desired(C).repos[1].data.files})  # type: ignore[union-attr]  # noqa: E501


def test_a_repo_without_data_key_is_not_planned_and_an_empty_list_deletes_ours() -> None:
    desired = DesiredState((RepoSpec("raw_data"), _repo("parameters", [], ())), (MODEL,))
    live = _written(_desired(C))
    plan = plan_data(desired, live, POLICY)
    assert [r.repo for r in plan.repos] == ["parameters"]
    assert plan.repos[0].count("delete") == 7


def test_manifest_codec_round_trips_and_refuses_garbage() -> None:
    m = Manifest("src", "abc", {"/a b": "00", "/ü": "11"})
    assert parse_manifest(encode_manifest(m)) == m
    for bad in ("", "pachsync.io/data-manifest: {", 'pachsync.io/data-manifest: {"v": 2}',
                'pachsync.io/data-manifest: {"v": 1, "files": {"/a": 3}}', "hand-made commit"):
        assert parse_manifest(bad) is None
    assert pending_source(pending_description("src")) == "src"
    assert pending_source(encode_manifest(m)) is None


@pytest.mark.parametrize("glob, path, hit", [
    ("/c_parameters.txt/*", "/c_parameters.txt/0.5", True),
    ("/c_parameters.txt/*", "/parameters/c_parameters.txt/0.5", False),
    ("/*", "/c_parameters.txt", True), ("/*", "/a/b", False), ("/**", "/a/b", True),
    ("/", "/", True), ("/{a,b}/?", "/b/x", True), ("/[!a]*", "/abc", False),
    ("/x\\*", "/x*", True), ("//c_parameters.txt/./*", "/c_parameters.txt/1", True),
])
def test_globs_match_as_pachyderm(glob: str, path: str, hit: bool) -> None:
    assert glob_matches(glob, path) is hit


def test_datum_roots_are_matched_ancestors() -> None:
    assert datum_roots("/", ["/a/b", "/c"]) == {"/"}
    assert datum_roots("/*", ["/a/b", "/a/c", "/d"]) == {"/a", "/d"}
    assert datum_roots("/c_parameters.txt/*", ["/parameters/c_parameters.txt/1"]) == set()
    assert datum_roots("/**", ["/a/b"]) == {"/a", "/a/b"} and datum_roots("/", []) == set()


@pytest.mark.fuzz
@given(st.lists(st.binary(min_size=1, max_size=80), min_size=1, max_size=30, unique=True))
def test_line_names_are_distinct_stable_and_valid(values: list[bytes]) -> None:
    stripped = {v.strip() for v in values if v.strip() and b"\n" not in v}
    names = {line_name(v) for v in stripped}
    assert len(names) == len(stripped)
    for v in stripped:
        name = line_name(v)
        assert name == line_name(v) and name not in (".", "..") and 0 < len(name) <= 64
        assert all(0x20 < ord(ch) < 0x7F and ch not in "/\\*?[]{}()" for ch in name)


_paths = st.sampled_from([f"/d/{i}" for i in range(8)] + ["/f", "/g"])


@pytest.mark.fuzz
@given(want=st.dictionaries(_paths, st.binary(max_size=3), max_size=10),
       ours=st.dictionaries(_paths, st.sampled_from(["x", "y"]), max_size=10),
       changed=st.sets(_paths, max_size=4), deleted=st.sets(_paths, max_size=4),
       listing=st.sets(_paths, max_size=10))
def test_plan_never_deletes_what_is_not_ours_and_converges(
        want: dict[str, bytes], ours: dict[str, str], changed: set[str], deleted: set[str],
        listing: set[str]) -> None:
    files = [make_file(p, c, "git") for p, c in want.items()]
    desired = DesiredState((_repo("r", files, ("/d/",)),), ())
    changed, deleted = changed & set(ours), (deleted & set(ours)) - changed
    live = {("default", "r"): LiveData("r", head="h", ours="o", manifest=Manifest(
        POLICY.source_id, "", ours), changed=frozenset(changed), deleted=frozenset(deleted),
        listing=dict.fromkeys(listing, "h"))}
    [r] = plan_data(desired, live, POLICY).repos
    deletes = {c.path for c in r.changes if c.action == "delete"}
    assert deletes <= set(ours) - changed - set(want)  # only ours, untouched, undeclared
    assert set(r.foreign).isdisjoint(ours)
    if r.write is None:
        return
    after = parse_manifest(r.write.description)
    assert after is not None and after.files == {f.path: f.digest for f in files}
    again = {("default", "r"): LiveData("r", head="n", ours="n", manifest=after)}
    assert not plan_data(desired, again, POLICY).has_changes


def test_the_data_section_renders_in_text_json_and_markdown_with_values_escaped() -> None:
    import json

    from agent.plan import Plan, render

    evil = "/x##vso[task.setvariable variable=A]b|`c`<i>"
    desired = DesiredState((_repo("raw", [make_file(evil, b"1\n", "data/e.csv")]),), ())
    data = plan_data(desired, {}, POLICY)
    pipelines = Plan(POLICY)
    text = render(pipelines, "text", data)
    assert "Data declared in git (one commit per changed repo):" in text
    assert "~ repo raw: 1 to add, 0 unchanged" in text and "data/e.csv, 2 bytes" in text
    assert "##vso[" not in text and "Data summary: 1 repo(s) to write (raw), 1 file(s)" in text
    doc = json.loads(render(pipelines, "json", data))
    assert doc["in_sync"] is False and doc["data"]["repos"][0]["changes"][0]["path"] == evil
    md = render(pipelines, "markdown", data)
    assert "#### Data declared in git" in md and "| `raw` | 1 to add, 0 unchanged |\n" in md
    assert "##vso[" not in md and "<i>" not in md
    synced = plan_data(desired, _written(desired), POLICY)
    assert json.loads(render(pipelines, "json", synced))["in_sync"] is True
    assert "Data declared" not in render(pipelines, "text", plan_data(
        DesiredState((RepoSpec("raw"),), ()), {}, POLICY))
