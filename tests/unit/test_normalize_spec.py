"""agent.plan.normalize: git's YAML and the server's stored spec compare equal after normalising."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from agent.plan.normalize import (
    ANN_MANAGED_BY,
    ANN_SPEC_HASH,
    clean_glob,
    input_name,
    normalize_spec,
    snake,
    spec_hash,
)
from agent.specs import load_desired

ROOT = Path(__file__).resolve().parents[2]

GIT: dict[str, Any] = {
    "pipeline": {"name": "model"},
    "description": "trains",
    "transform": {"image": "reg/iris:1", "cmd": ["python3", "-m", "x"],
                  "env": {"A": "0", "EMPTY": ""}},
    "input": {"cross": [
        {"pfs": {"repo": "split", "glob": "/train.csv"}},
        {"pfs": {"name": "c", "repo": "parameters", "glob": "c_parameters.txt/*/"}},
    ]},
    "parallelism_spec": {"constant": 2},
    "resource_requests": {"cpu": 0.1, "memory": "256Mi"},
    "datum_tries": 2,
}

# What a Pachyderm server stores for GIT: defaults filled, children sorted, 64-bit ints as
# strings (protobuf JSON), camelCase keys, cpu as a 32-bit float, salt and server fields added.
LIVE: dict[str, Any] = {
    "pipeline": {"name": "model", "project": {"name": "default"}},
    "description": "trains",
    "transform": {"image": "reg/iris:1", "cmd": ["python3", "-m", "x"],
                  "env": {"EMPTY": "", "A": "0"}},
    "input": {"cross": [
        {"pfs": {"name": "c", "repo": "parameters", "glob": "/c_parameters.txt/*",
                 "branch": "master", "repoType": "user", "project": "default"}},
        {"pfs": {"name": "split", "repo": "split", "glob": "/train.csv", "branch": "master",
                 "repo_type": "user", "project": "default"}},
    ]},
    "parallelismSpec": {"constant": "2"},
    "resource_requests": {"cpu": 0.10000000149011612, "memory": "256Mi"},
    "datum_tries": "2",
    "output_branch": "master",
    "reprocess_spec": "until_success",
    "salt": "a1b2c3",
    "created_at": "2026-01-01T00:00:00Z",
    "workers_available": "2",
    "metadata": {"annotations": {ANN_MANAGED_BY: "src", ANN_SPEC_HASH: "abc"}},
}


def test_git_and_server_forms_normalise_equal() -> None:
    assert normalize_spec(GIT) == normalize_spec(LIVE)
    assert spec_hash(normalize_spec(GIT)) == spec_hash(normalize_spec(LIVE))


def test_defaults_are_filled() -> None:
    n = normalize_spec({"pipeline": {"name": "p"}, "transform": {"cmd": ["sh"]},
                        "input": {"pfs": {"repo": "r", "glob": "/*"}}})
    assert n["transform"]["image"] == "ubuntu:20.04"
    assert n["output_branch"] == "master"
    assert n["datum_tries"] == 3
    assert n["reprocess_spec"] == "until_success"
    assert n["parallelism_spec"] == {"constant": 1}
    assert n["input"]["pfs"] == {"name": "r", "repo": "r", "glob": "/*", "branch": "master",
                                 "repo_type": "user", "project": "default"}


def test_zero_values_equal_absent_but_map_values_kept() -> None:
    a = normalize_spec({**GIT, "s3_out": False, "pod_patch": "", "datum_tries": 2,
                        "parallelism_spec": {"constant": 2}})
    assert a == normalize_spec(GIT)
    assert a["transform"]["env"]["EMPTY"] == ""


def test_salt_and_agent_annotations_never_count() -> None:
    base = normalize_spec(GIT)
    other = copy.deepcopy(GIT)
    other["salt"] = "zzz"
    other["metadata"] = {"annotations": {ANN_MANAGED_BY: "x", ANN_SPEC_HASH: "y"}}
    assert normalize_spec(other) == base
    other["metadata"]["annotations"]["team"] = "ml"
    assert normalize_spec(other)["metadata"] == {"annotations": {"team": "ml"}}


@pytest.mark.parametrize("field,value", [
    ("transform", {"image": "reg/iris:2", "cmd": ["python3", "-m", "x"]}),
    ("description", "other"),
    ("parallelism_spec", {"constant": 3}),
    ("datum_tries", 5),
])
def test_real_changes_change_the_hash(field: str, value: Any) -> None:
    changed = {**GIT, field: value}
    assert spec_hash(normalize_spec(changed)) != spec_hash(normalize_spec(GIT))


def test_helpers() -> None:
    assert snake("imagePullSecrets") == "image_pull_secrets"
    assert snake("s3Out") == "s3_out"
    assert snake("repo_type") == "repo_type"
    assert clean_glob("*") == "/*" and clean_glob("/a//b/") == "/a/b" and clean_glob("/") == "/"
    assert input_name({"cross": [{"pfs": {"repo": "b"}}, {"pfs": {"repo": "a"}}]}) == "b"


def test_durations_compare_by_value() -> None:
    a = normalize_spec({**GIT, "datum_timeout": "60s"})
    b = normalize_spec({**GIT, "datum_timeout": "60.000s"})
    assert a == b


def test_every_repo_spec_is_stable_under_normalisation() -> None:
    """Normalising twice changes nothing, for every spec in specs/."""
    for ps in load_desired(ROOT / "specs").pipelines:
        once = normalize_spec(ps.spec)
        assert normalize_spec(once) == once, ps.file


def test_server_filled_cron_trigger_and_service_defaults() -> None:
    git = {"pipeline": {"name": "nightly"}, "transform": {"cmd": ["true"]},
           "input": {"cross": [{"cron": {"name": "tick", "spec": "@daily"}},
                               {"pfs": {"repo": "raw", "glob": "/", "trigger": {"size": "1M"}}}]},
           "service": {"internal_port": 8888, "external_port": 30888}}
    live = {"pipeline": {"name": "nightly"}, "transform": {"cmd": ["true"]},
            "input": {"cross": [
                {"pfs": {"name": "raw", "repo": "raw", "glob": "/", "branch": "nightly-trigger-1",
                         "trigger": {"size": "1M", "branch": "master"}}},
                {"cron": {"name": "tick", "spec": "@daily", "repo": "nightly_tick",
                          "start": "2026-01-01T00:00:00Z"}}]},
            "service": {"internal_port": "8888", "external_port": "30888", "type": "NodePort"}}
    assert normalize_spec(git) == normalize_spec(live)
