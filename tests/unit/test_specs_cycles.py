"""A cycle of pipelines is reported at every file of the cycle (agent.specs.graph), one error each
naming the cycle through that file, so the file a pull request edited always carries it,
whichever pipeline sorts first."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.errors import SpecError
from agent.specs import validate_specs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    shutil.copytree(ROOT / "data", tmp_path / "data")  # the data specs/repos.yaml may declare
    return tmp_path / "specs"


def _edit(specs: Path, name: str, old: str, new: str) -> None:
    path = specs / f"pipelines/{name}.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def _cycle_errors(specs: Path) -> dict[str, SpecError]:
    errors = [e for e in validate_specs(specs) if "cycle" in e.message]
    by_file = {Path(e.file).stem: e for e in errors}
    assert len(by_file) == len(errors), "two cycle errors in one file"
    for e in errors:
        line = (specs.parent / e.file).read_text().splitlines()[e.line - 1]
        assert e.path.endswith(".repo") and "repo:" in line and e.hint, e.format()
    return by_file


# (edited file, old, new, the pipelines of the cycle). split sorts after model and select, so
# reporting only at the first member by name missed the edited file.
CASES = [
    ("split", "repo: raw_data", "repo: select", {"split", "model", "test", "select"}),
    ("split", "repo: raw_data", "repo: model", {"split", "model"}),
    ("test", "repo: split", "repo: select", {"test", "select"}),
    ("model", "repo: split", "repo: test", {"model", "test"}),
]


@pytest.mark.parametrize(("edited", "old", "new", "members"), CASES)
def test_every_file_of_the_cycle_reports_it(specs: Path, edited: str, old: str, new: str,
                                            members: set[str]) -> None:
    _edit(specs, edited, old, new)
    errors = _cycle_errors(specs)
    assert set(errors) == members
    for name, error in errors.items():
        flow = error.message.removeprefix("pipelines form a cycle: ").split(" -> ")
        assert flow[0] == flow[-1] == name, error.message  # the cycle through this file
        assert set(flow) <= members and len(flow) == len(set(flow)) + 1


def test_the_edited_file_carries_the_cycle(specs: Path) -> None:
    _edit(specs, "split", "repo: raw_data", "repo: select")
    error = _cycle_errors(specs)["split"]
    # the shortest cycle through split (select reads test before model)
    assert error.message == "pipelines form a cycle: split -> test -> select -> split"


def test_self_loop_is_a_cycle(specs: Path) -> None:
    _edit(specs, "test", "repo: model", "repo: test")
    errors = _cycle_errors(specs)
    assert [e.message for e in errors.values()] == ["pipelines form a cycle: test -> test"]


def test_two_cycles_each_reported_in_their_own_files(specs: Path) -> None:
    _edit(specs, "split", "repo: raw_data", "repo: model")
    _edit(specs, "test", "repo: split", "repo: select")
    errors = _cycle_errors(specs)
    assert set(errors) == {"split", "model", "test", "select"}
    assert "select" not in errors["split"].message and "model" not in errors["test"].message
