"""Unit tests of the small pure rules behind `pachsync validate`: image references, /pfs path
warnings, the line-keeping YAML loader and the DAG order (agent.specs.images, .semantic,
.yamlread, .graph)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.specs import check_specs, load_desired
from agent.specs.images import image_problem, split_image
from agent.specs.yamlread import YamlProblem, load_yaml

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("image", "parts"),
    [
        ("acr.azurecr.io/iris-stages:0.1.0", ("acr.azurecr.io/iris-stages", "0.1.0", None)),
        ("localhost:5000/a/b:3f2a9c1", ("localhost:5000/a/b", "3f2a9c1", None)),
        ("localhost:5000/a/b", ("localhost:5000/a/b", None, None)),
        (f"reg/x@{DIGEST}", ("reg/x", None, DIGEST)),
        (f"reg/x:1@{DIGEST}", ("reg/x", "1", DIGEST)),
    ],
)
def test_split_image(image: str, parts: tuple[str, str | None, str | None]) -> None:
    assert split_image(image) == parts


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("acr.azurecr.io/iris-stages:0.1.0", ""),
        ("localhost:5000/iris:abc123", ""),
        (f"reg/x@{DIGEST}", ""),
        ("reg/x", "has no tag"),
        ("localhost:5000/x", "has no tag"),
        ("reg/x:latest", "mutable tag 'latest'"),
        ("reg/x:LATEST", "mutable tag 'LATEST'"),
        ("reg/x:master", "mutable tag 'master'"),
        ("reg/x:nightly", "mutable tag 'nightly'"),
        ("reg/X:1", "invalid repository name"),
        ("reg/x:-bad", "invalid tag"),
        ("reg/x :1", "whitespace"),
    ],
)
def test_image_policy(image: str, problem: str) -> None:
    found, hint = image_problem(image)
    assert (problem in found) if problem else found == ""
    assert bool(hint) == bool(problem)


def test_yaml_lines_follow_keys_and_list_items() -> None:
    doc = load_yaml("a:\n  b:\n    - x\n    - y: 1\n      z: 2\nc: 3\n")
    assert doc.data == {"a": {"b": ["x", {"y": 1, "z": 2}]}, "c": 3}
    assert doc.line_of(("a", "b", 1, "z")) == 5
    assert doc.line_of(("a", "b", 0)) == 3
    assert doc.line_of(("c",)) == 6
    assert doc.line_of(("a", "missing", "deeper")) == 1  # nearest known ancestor
    assert load_yaml("").data is None


def test_yaml_anchors_and_merge_keys_load_like_safe_load() -> None:
    doc = load_yaml("base: &b {glob: /, repo: r}\nuse:\n  <<: *b\n  glob: /*\n")
    assert doc.data["use"] == {"glob": "/*", "repo": "r"}
    assert doc.line_of(("use", "glob")) == 4


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("a: 1\nb: [1, 2\n", 2, "flow sequence"),
        ("a: 1\nb: 2\na: 3\n", 3, "duplicate key 'a' (first at line 1)"),
        ("a: b: c\n", 1, "mapping values are not allowed"),
        ("a: 1\n---\nb: 2\n", 3, "more than one YAML document"),
        ("a: !!python/object:os.system x\n", 1, "could not determine a constructor"),
    ],
)
def test_yaml_problems_have_lines(text: str, line: int, words: str) -> None:
    with pytest.raises(YamlProblem) as caught:
        load_yaml(text)
    assert caught.value.line == line and words in caught.value.message


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    shutil.copytree(ROOT / "data", tmp_path / "data")  # the data specs/repos.yaml declares
    return tmp_path / "specs"


def test_pfs_path_of_no_input_is_a_warning(specs: Path) -> None:
    model = specs / "pipelines/model.yaml"
    model.write_text(model.read_text().replace("- /pfs/gamma\n", "- /pfs/gama\n"))
    report = check_specs(specs)
    assert report.errors == ()
    [warning] = report.warnings
    assert warning.file == "specs/pipelines/model.yaml" and warning.path.startswith(
        "transform.cmd["
    )
    assert "/pfs/gama is not an input" in warning.message and "c, gamma, split" in warning.message
    assert model.read_text().splitlines()[warning.line - 1].strip() == "- /pfs/gama"


def test_dag_order_is_upstream_first_and_stable(specs: Path) -> None:
    extra = specs / "pipelines/aaa-report.yaml"  # sorts first by name, runs last by data
    extra.write_text(
        "pipeline:\n  name: aaa-report\ntransform:\n  image: a/b:1\n  cmd: [sh]\n"
        "input:\n  pfs: {repo: select, glob: /}\n"
    )
    order = [p.name for p in load_desired(specs).pipelines]
    assert order == ["split", "model", "test", "select", "aaa-report"]
    assert order == [p.name for p in load_desired(specs).pipelines]


def test_specs_in_a_project_resolve_inputs_within_it(specs: Path) -> None:
    extra = specs / "pipelines/other.yaml"
    extra.write_text(
        "pipeline:\n  name: other\n  project: {name: research}\ntransform:\n  image: a/b:1\n"
        "  cmd: [sh]\ninput:\n  pfs: {repo: raw_data, glob: /}\n"
    )
    errors = check_specs(specs).errors
    assert [e.message for e in errors] == [
        "input repo 'raw_data' is neither declared in specs/repos.yaml nor produced by a pipeline"
    ]
    extra.write_text(
        extra.read_text().replace("repo: raw_data", "repo: raw_data, project: default")
    )
    assert check_specs(specs).errors == ()


def test_json_spec_in_pipelines_is_a_warning(specs: Path) -> None:
    (specs / "pipelines/legacy.json").write_text('{"pipeline": {"name": "legacy"}}')
    report = check_specs(specs)
    assert report.errors == ()
    assert [(w.file, w.line) for w in report.warnings] == [("specs/pipelines/legacy.json", 0)]
    assert "not read" in report.warnings[0].message
