"""The shipped specs satisfy our strict schema profile AND Pachyderm's own published schema.

Pachyderm's CreatePipelineRequest schema (reference/pachyderm/, draft-04, camelCase) is the
authority on what a real cluster accepts; ours (schemas/, snake_case) is stricter. A spec that
uses every field our profile models must pass both, which proves the profile adds no field
Pachyderm would reject.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from agent.specs import check_specs
from agent.specs.camel import camel, to_camel

ROOT = Path(__file__).resolve().parents[2]
SPEC_FILES = sorted((ROOT / "specs" / "pipelines").glob("*.yaml"))
PACHYDERM = json.loads(
    (ROOT / "reference/pachyderm/CreatePipelineRequest.v2.8.0.schema.json").read_text()
)
OURS = json.loads((ROOT / "schemas/pipeline.schema.json").read_text())
REPOS = json.loads((ROOT / "schemas/repos.schema.json").read_text())

KITCHEN_SINK: dict[str, Any] = {
    "pipeline": {"name": "everything", "project": {"name": "default"}},
    "description": "uses every field the profile models",
    "metadata": {"annotations": {"pachsync.io/reprocess": "never"}, "labels": {"team_name": "ds"}},
    "transform": {
        "image": "pachsyncdemo.azurecr.io/iris-stages:3f2a9c1",
        "cmd": ["python3", "-m", "stages.train"],
        "err_cmd": ["true"],
        "env": {"MY_VAR": "1", "camel_case_me_not": "x"},
        "secrets": [{"name": "s", "key": "k", "mount_path": "/s", "env_var": "S"}],
        "image_pull_secrets": ["acr-pull"],
        "stdin": ["echo hi"],
        "err_stdin": ["echo err"],
        "accept_return_code": [1],
        "debug": False,
        "user": "root",
        "working_dir": "/app",
        "memory_volume": False,
        "datum_batching": False,
    },
    "input": {
        "union": [
            {
                "cross": [
                    {
                        "pfs": {
                            "repo": "a",
                            "glob": "/*",
                            "name": "a_in",
                            "branch": "master",
                            "lazy": True,
                            "empty_files": False,
                            "s3": False,
                            "repo_type": "user",
                            "project": "default",
                            "trigger": {
                                "branch": "staging",
                                "all": True,
                                "rate_limit_spec": "@hourly",
                                "size": "1M",
                                "commits": 3,
                                "cron_spec": "@daily",
                            },
                        }
                    },
                    {
                        "cron": {
                            "name": "tick",
                            "spec": "@every 60s",
                            "overwrite": True,
                            "start": "2024-01-01T00:00:00Z",
                        }
                    },
                ]
            },
            {
                "join": [
                    {"pfs": {"repo": "b", "glob": "/(*)", "join_on": "$1", "outer_join": True}},
                    {"pfs": {"repo": "c", "glob": "/(*)", "join_on": "$1"}},
                ]
            },
            {"group": [{"pfs": {"repo": "d", "glob": "/(*)", "group_by": "$1"}}]},
        ]
    },
    "parallelism_spec": {"constant": 2},
    "resource_requests": {
        "cpu": 0.5,
        "memory": "256Mi",
        "disk": "1Gi",
        "gpu": {"type": "nvidia.com/gpu", "number": 1},
    },
    "resource_limits": {"cpu": 1, "memory": "1G"},
    "sidecar_resource_requests": {"cpu": 0.1},
    "sidecar_resource_limits": {"memory": "128Mi"},
    "output_branch": "master",
    "egress": {"URL": "s3://bucket/dir"},
    "s3_out": False,
    "datum_tries": 3,
    "datum_timeout": "600s",
    "job_timeout": "3600s",
    "reprocess_spec": "every_job",
    "autoscaling": True,
    "salt": "abc",
    "scheduling_spec": {
        "node_selector": {"kubernetes.io/os": "linux"},
        "priority_class_name": "high",
    },
    "pod_patch": "[]",
    "tolerations": [
        {
            "key": "k",
            "operator": "EQUAL",
            "value": "v",
            "effect": "NO_SCHEDULE",
            "toleration_seconds": 10,
        }
    ],
    "datum_set_spec": {"number": 10},
}


def _pachyderm_errors(spec: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft4Validator(PACHYDERM)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(to_camel(spec))]


def _our_errors(spec: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(OURS, format_checker=jsonschema.FormatChecker())
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(spec)]


def test_there_are_four_pipelines() -> None:
    assert [p.stem for p in SPEC_FILES] == ["model", "select", "split", "test"]


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.name)
def test_spec_validates_against_pachyderms_own_schema(path: Path) -> None:
    spec = yaml.safe_load(path.read_text())
    assert _our_errors(spec) == []
    assert _pachyderm_errors(spec) == []


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.name)
def test_spec_names_the_schema_for_editors_and_the_stage_image(path: Path) -> None:
    text = path.read_text()
    assert (
        text.splitlines()[0] == "# yaml-language-server: $schema=../../schemas/pipeline.schema.json"
    )
    spec = yaml.safe_load(text)
    assert spec["pipeline"]["name"] == path.stem
    assert spec["description"]
    assert spec["transform"]["image"].startswith("pachsyncdemo.azurecr.io/iris-stages:")
    assert spec["transform"]["image_pull_secrets"] == ["acr-pull"]
    assert spec["transform"]["cmd"][:2] == ["python3", "-m"]
    assert spec["transform"]["cmd"][2].startswith("stages.")


def test_profile_models_only_fields_pachyderm_accepts() -> None:
    assert _our_errors(KITCHEN_SINK) == []
    assert _pachyderm_errors(KITCHEN_SINK) == []


def test_profile_is_stricter_than_pachyderm() -> None:
    typo = {**KITCHEN_SINK, "parallelism_spec": {"constant": 2, "constnat": 3}}
    assert any("constnat" in e for e in _our_errors(typo))
    assert any("constnat" in e for e in _pachyderm_errors(typo))  # theirs rejects it too...
    latest = {**KITCHEN_SINK, "transform": {**KITCHEN_SINK["transform"], "image": "x/y:latest"}}
    assert _pachyderm_errors(latest) == []  # ...but only ours refuses a mutable tag
    assert _our_errors(latest)
    no_input = {k: v for k, v in KITCHEN_SINK.items() if k != "input"}
    assert _our_errors(no_input) and not _pachyderm_errors(no_input)


def test_camel_case_keeps_user_map_keys() -> None:
    converted = to_camel(KITCHEN_SINK)
    assert converted["transform"]["env"] == {"MY_VAR": "1", "camel_case_me_not": "x"}
    assert converted["metadata"]["labels"] == {"team_name": "ds"}
    assert converted["schedulingSpec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert converted["transform"]["imagePullSecrets"] == ["acr-pull"]
    assert converted["input"]["union"][0]["cross"][0]["pfs"]["emptyFiles"] is False
    assert converted["egress"] == {"URL": "s3://bucket/dir"}
    assert camel("sidecar_resource_limits") == "sidecarResourceLimits"


def test_schemas_are_valid_draft7_and_repos_yaml_passes() -> None:
    jsonschema.Draft7Validator.check_schema(OURS)
    jsonschema.Draft7Validator.check_schema(REPOS)
    repos = yaml.safe_load((ROOT / "specs/repos.yaml").read_text())
    assert list(jsonschema.Draft7Validator(REPOS).iter_errors(repos)) == []
    assert [r["name"] for r in repos["repos"]] == ["raw_data", "parameters"]
    assert (
        (ROOT / "specs/repos.yaml")
        .read_text()
        .startswith("# yaml-language-server: $schema=../schemas/repos.schema.json")
    )


def test_shipped_specs_load_in_dag_order() -> None:
    report = check_specs(ROOT / "specs")
    assert report.errors == () and report.warnings == ()
    assert report.state is not None
    assert [p.name for p in report.state.pipelines] == ["split", "model", "test", "select"]
    assert [p.inputs for p in report.state.pipelines] == [
        ("raw_data",),
        ("split", "parameters"),
        ("split", "model"),
        ("test", "model"),
    ]
    assert report.state.pipelines[1].file == "specs/pipelines/model.yaml"
