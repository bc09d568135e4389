"""The `pachsync.io/*` annotations a spec may carry: `validate` checks their keys and values
with file:line (agent.specs.semantic), the planner reads them through the same vocabulary
(agent.util.annotations), and the `--reprocess` choices of plan/apply/agent come from the same
enum, so a value validate accepts is never read as something else."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest

from agent.errors import SpecError
from agent.specs import check_specs
from agent.util.annotations import (
    AGENT_WRITTEN,
    USER_SET,
    ReprocessMode,
    adopt_requested,
)

ROOT = Path(__file__).resolve().parents[2]
FILE = "specs/pipelines/select.yaml"


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    return tmp_path / "specs"


def _annotate(specs: Path, annotations: dict[str, str]) -> Path:
    spec = specs / "pipelines/select.yaml"
    lines = "".join(f"    {k}: {v!r}\n" for k, v in annotations.items())
    spec.write_text(spec.read_text().replace(
        "description: >-", f"metadata:\n  annotations:\n{lines}description: >-", 1))
    return spec


def _errors(specs: Path) -> list[SpecError]:
    """The errors of the annotated file (repos.yaml's are another feature's)."""
    return [e for e in check_specs(specs).errors if e.file == FILE]


def _only_error(specs: Path, key: str) -> SpecError:
    spec = specs / "pipelines/select.yaml"
    [error] = _errors(specs)
    assert (error.file, error.path) == (FILE, f"metadata.annotations.{key}")
    assert spec.read_text().splitlines()[error.line - 1].strip().startswith(f"{key}:")
    return error


@pytest.mark.parametrize("value", ["sometimes", "Always", " never", "", "true", "auto,always"])
def test_an_unknown_reprocess_mode_is_an_error_at_its_line(specs: Path, value: str) -> None:
    _annotate(specs, {"pachsync.io/reprocess": value})
    error = _only_error(specs, "pachsync.io/reprocess")
    assert repr(value) in error.message
    assert "auto, always, never" in error.hint


@pytest.mark.parametrize("mode", list(ReprocessMode))
def test_every_reprocess_mode_validates(specs: Path, mode: ReprocessMode) -> None:
    _annotate(specs, {"pachsync.io/reprocess": str(mode)})
    assert _errors(specs) == []


@pytest.mark.parametrize("value", ["yes", "1", "on", "", "adopt", "truee"])
def test_adopt_must_be_true_or_false(specs: Path, value: str) -> None:
    _annotate(specs, {"pachsync.io/adopt": value})
    error = _only_error(specs, "pachsync.io/adopt")
    assert repr(value) in error.message and '"true"' in error.hint


@pytest.mark.parametrize(("value", "adopt"), [("true", True), ("false", False),
                                              ("True", True), (" FALSE ", False)])
def test_adopt_values_validate_and_plan_alike(specs: Path, value: str, adopt: bool) -> None:
    _annotate(specs, {"pachsync.io/adopt": value})
    assert _errors(specs) == []
    assert adopt_requested({"pachsync.io/adopt": value}) is adopt


@pytest.mark.parametrize("key", ["pachsync.io/reprocesss", "pachsync.io/Adopt",
                                 "Pachsync.IO/reprocess", "pachsync.io/", "pachsync.io/self-heal"])
def test_an_unknown_pachsync_key_is_an_error_listing_the_known_ones(specs: Path,
                                                                    key: str) -> None:
    _annotate(specs, {key: "always"})
    error = _only_error(specs, key)
    assert "unknown" in error.message
    for known in USER_SET:
        assert known in error.hint


@pytest.mark.parametrize("key", sorted(AGENT_WRITTEN))
def test_keys_the_agent_writes_are_refused_in_a_spec(specs: Path, key: str) -> None:
    _annotate(specs, {key: "x"})
    error = _only_error(specs, key)
    assert "written by the agent" in error.message and "remove it" in error.hint


def test_other_annotations_and_several_problems_at_once(specs: Path) -> None:
    spec = _annotate(specs, {"team": "ds", "example.com/pachsync.io/x": "1",
                             "pachsync.io/reprocess": "sometimes", "pachsync.io/adopt": "yes"})
    errors = _errors(specs)
    assert [e.path for e in errors] == ["metadata.annotations.pachsync.io/reprocess",
                                        "metadata.annotations.pachsync.io/adopt"]
    lines = spec.read_text().splitlines()
    assert [lines[e.line - 1].split(":")[0].strip() for e in errors] == [
        "pachsync.io/reprocess", "pachsync.io/adopt"]


def _choices(argv_parser: argparse.ArgumentParser, dest: str) -> list[str]:
    for action in argv_parser._actions:
        if action.dest == dest:
            return [str(c) for c in action.choices or ()]
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found = _choices(sub, dest)
                if found:
                    return found
    return []


@pytest.mark.parametrize("command", ["plan", "apply", "agent"])
def test_reprocess_choices_come_from_the_enum(command: str) -> None:
    from agent.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert _choices(sub.choices[command], "reprocess") == [m.value for m in ReprocessMode]
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--reprocess", "sometimes"])
