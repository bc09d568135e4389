"""`pachsync validate` on broken specs: every problem is reported at the right file and line,
with the spec path and a hint, and never as a traceback.

Each case copies the shipped specs/ to a temp dir and breaks one thing. The expected line is
found from a marker in the broken text, so the cases keep working when the shipped specs change.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.errors import SpecError
from agent.specs import check_specs, load_desired, validate_specs

ROOT = Path(__file__).resolve().parents[2]
PACHSYNC = Path(sys.executable).parent / "pachsync"
LONG = "a" * 52


@dataclass(frozen=True)
class Case:
    id: str
    file: str  # relative to the specs dir
    old: str  # text replaced in the shipped file ("" = write `new` as the whole file)
    new: str
    marker: str  # the expected error is on the first line containing this (after `new`)
    message: str  # a substring of the expected error message
    path: str | None = None  # the expected spec path, when it matters
    hint: str | None = None


NEW_PIPELINE = """\
pipeline:
  name: {name}
transform:
  image: pachsyncdemo.azurecr.io/iris-stages:0.1.0
  cmd: [python3, -m, stages.split]
input:
  pfs:
    repo: raw_data
    glob: /
"""

CASES = [
    Case(
        "bad-yaml-indent",
        "pipelines/model.yaml",
        "  name: model\n",
        "  name: model\n bad: x\n",
        " bad: x",
        "invalid YAML",
        hint="YAML syntax",
    ),
    Case(
        "bad-yaml-colon",
        "pipelines/split.yaml",
        "  name: split\n",
        "  name: split: x\n",
        "name: split: x",
        "invalid YAML: mapping values are not allowed here",
    ),
    Case(
        "unknown-key",
        "pipelines/model.yaml",
        "  constant: 2\n",
        "  constnat: 2\n",
        "constnat",
        "unknown key 'constnat'",
        "parallelism_spec.constnat",
        "did you mean 'constant'?",
    ),
    Case(
        "camel-case-key",
        "pipelines/test.yaml",
        "parallelism_spec:",
        "parallelismSpec:",
        "parallelismSpec",
        "unknown key 'parallelismSpec'",
        hint="snake_case",
    ),
    Case(
        "pfs-commit-not-allowed",
        "pipelines/split.yaml",
        "    glob: /\n",
        "    glob: /\n    commit: abc\n",
        "commit: abc",
        "unknown key 'commit'",
        "input.pfs.commit",
    ),
    Case(
        "unknown-repo",
        "pipelines/model.yaml",
        "repo: parameters",
        "repo: paramters",
        "paramters",
        "input repo 'paramters' is neither declared in",
        "input.cross[1].pfs.repo",
    ),
    Case(
        "latest-tag",
        "pipelines/test.yaml",
        "iris-stages:0.1.0",
        "iris-stages:latest",
        "image:",
        "mutable tag 'latest'",
        "transform.image",
        "bump-image",
    ),
    Case(
        "missing-tag",
        "pipelines/select.yaml",
        "iris-stages:0.1.0",
        "iris-stages",
        "image:",
        "has no tag",
        "transform.image",
    ),
    Case(
        "mutable-branch-tag",
        "pipelines/split.yaml",
        "iris-stages:0.1.0",
        "iris-stages:main",
        "image:",
        "mutable tag 'main'",
        "transform.image",
    ),
    Case(
        "name-mismatch",
        "pipelines/split.yaml",
        "  name: split\n",
        "  name: splitter\n",
        "name: splitter",
        "differs from the file name 'split'",
        "pipeline.name",
        "rename",
    ),
    Case(
        "name-too-long",
        f"pipelines/{LONG}.yaml",
        "",
        NEW_PIPELINE.format(name=LONG),
        f"name: {LONG}",
        "52 characters, Pachyderm allows 51",
        "pipeline.name",
    ),
    Case(
        "name-bad-start",
        "pipelines/-bad.yaml",
        "",
        NEW_PIPELINE.format(name="-bad"),
        "name: -bad",
        "invalid pipeline name '-bad'",
        "pipeline.name",
    ),
    Case(
        "duplicate-input-name",
        "pipelines/model.yaml",
        "name: gamma",
        "name: c",
        "name: c\n        repo: parameters\n        glob: /gamma",
        "input name 'c' is used more than once (also input.cross[1].pfs.name)",
        "input.cross[2].pfs.name",
    ),
    Case(
        "missing-cmd",
        "pipelines/evaluate-less.yaml",
        "",
        "pipeline:\n  name: evaluate-less\ntransform:\n  image: a/b:1\ninput:\n"
        "  pfs: {repo: raw_data, glob: /}\n",
        "transform:",
        "missing required key 'cmd'",
        "transform",
    ),
    Case(
        "two-input-types",
        "pipelines/split.yaml",
        "    glob: /\n",
        "    glob: /\n  cross: []\n",
        "input:",
        "exactly one of pfs, cron, cross",
        "input",
    ),
    Case(
        "env-not-string",
        "pipelines/select.yaml",
        'SELECT_TOLERANCE: "0"',
        "SELECT_TOLERANCE: 0",
        "SELECT_TOLERANCE: 0",
        "must be of type string",
        "transform.env.SELECT_TOLERANCE",
        "quote",
    ),
    Case(
        "bad-reprocess-spec",
        "pipelines/test.yaml",
        "datum_tries: 2\n",
        "datum_tries: 2\nreprocess_spec: always\n",
        "reprocess_spec",
        "must be one of",
    ),
    Case(
        "duplicate-yaml-key",
        "pipelines/test.yaml",
        "datum_tries: 2\n",
        "datum_tries: 2\ndatum_tries: 3\n",
        "datum_tries: 3",
        "duplicate key 'datum_tries'",
    ),
    Case(
        "two-documents",
        "pipelines/test.yaml",
        "datum_tries: 2\n",
        "datum_tries: 2\n---\npipeline: {name: x}\n",
        "pipeline: {name: x}",
        "more than one YAML",
    ),
    Case("empty-file", "pipelines/empty.yaml", "", "# nothing yet\n", "# nothing", "file is empty"),
    Case(
        "duplicate-pipeline",
        "pipelines/model.yml",
        "",
        "@copy model.yaml",
        "  name: model",
        "pipeline 'model' is also defined in",
        "pipeline.name",
    ),
    Case(
        "pipeline-named-like-input-repo",
        "pipelines/raw_data.yaml",
        "",
        NEW_PIPELINE.format(name="raw_data").replace("repo: raw_data", "repo: parameters"),
        "name: raw_data",
        "has the name of the input repo declared in",
        "pipeline.name",
    ),
    Case(
        "repos-unknown-key",
        "repos.yaml",
        "  - name: parameters\n",
        "  - nme: parameters\n",
        "nme: parameters",
        "unknown key 'nme'",
        "repos[1].nme",
        "did you mean 'name'?",
    ),
    Case(
        "repos-missing-name",
        "repos.yaml",
        "  - name: parameters\n",
        "  - nme: parameters\n",
        "nme: parameters",
        "missing required key 'name'",
        "repos[1]",
    ),
    Case(
        "repos-duplicate",
        "repos.yaml",
        "  - name: parameters\n",
        "  - name: raw_data\n",
        "  - name: raw_data\n    description: >-\n      Hyper",
        "declared twice",
        "repos[1].name",
    ),
    Case(
        "repos-not-a-list",
        "repos.yaml",
        "",
        "repos: raw_data\n",
        "repos:",
        "must be of type array",
        "repos",
    ),
]


def _break(specs: Path, case: Case) -> int:
    """Applies the case to the copy in `specs`; returns the expected 1-based line."""
    target = specs / case.file
    if case.new.startswith("@copy "):
        text = (specs / "pipelines" / case.new.split()[1]).read_text()
    elif case.old:
        original = target.read_text()
        assert case.old in original, f"{case.id}: {case.old!r} not in {case.file}"
        text = original.replace(case.old, case.new, 1)
    else:
        text = case.new
    target.write_text(text)
    offset = text.index(case.marker)
    return text.count("\n", 0, offset) + 1


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    copy = tmp_path / "specs"
    shutil.copytree(ROOT / "specs", copy)
    shutil.copytree(ROOT / "data", copy.parent / "data")  # the data specs/repos.yaml declares
    return copy


def _find(errors: list[SpecError], case: Case) -> SpecError:
    hits = [e for e in errors if case.message in e.message]
    assert hits, f"{case.id}: no error with {case.message!r} in:\n" + "\n".join(
        e.format() for e in errors
    )
    return hits[0]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_broken_spec_is_reported_at_file_and_line(specs: Path, case: Case) -> None:
    line = _break(specs, case)
    errors = validate_specs(specs)
    error = _find(errors, case)
    assert error.file == f"specs/{case.file}", error.format()
    assert error.line == line, f"{case.id}: expected line {line}: {error.format()}"
    if case.path is not None:
        assert error.path == case.path, error.format()
    if case.hint is not None:
        assert case.hint in error.hint, error.format()
    assert error.hint, f"{case.id}: no hint: {error.format()}"
    places = [(e.file, e.line, e.path) for e in errors]
    assert len(places) == len(set(places)), "one problem reported twice:\n" + "\n".join(
        e.format() for e in errors
    )


def test_there_are_many_kinds_of_broken_spec() -> None:
    assert len(CASES) >= 12 and len({c.id for c in CASES}) == len(CASES)


def test_salt_is_a_warning_not_an_error(specs: Path) -> None:
    split = specs / "pipelines/split.yaml"
    split.write_text(split.read_text() + "salt: pinned\n")
    report = check_specs(specs)
    assert report.errors == ()
    assert [w.path for w in report.warnings] == ["salt"]
    assert report.warnings[0].line == len(split.read_text().splitlines())


def test_load_desired_raises_spec_invalid_with_every_error(specs: Path) -> None:
    from agent.errors import SpecInvalid

    for name in ("split", "test"):
        path = specs / f"pipelines/{name}.yaml"
        path.write_text(path.read_text().replace("iris-stages:0.1.0", "iris-stages:latest"))
    with pytest.raises(SpecInvalid) as caught:
        load_desired(specs)
    assert sorted(e.file for e in caught.value.errors) == [
        "specs/pipelines/split.yaml",
        "specs/pipelines/test.yaml",
    ]
    assert "specs/pipelines/split.yaml:" in caught.value.format()


def test_no_pipelines_dir_means_empty_desired_state(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    state = load_desired(tmp_path / "specs")
    assert state.repos == () and state.pipelines == ()
    [warning] = check_specs(tmp_path / "specs").warnings
    assert warning.file == "specs/pipelines" and warning.message == "no pipeline specs found"


# --- the real command line -------------------------------------------------------------------


def _pachsync(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PACHSYNC.exists(), f"{PACHSYNC} missing: install the project into the venv"
    return subprocess.run(
        [str(PACHSYNC), "validate", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_cli_passes_on_the_shipped_specs() -> None:
    done = _pachsync(cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "specs is valid: 2 input repo(s), 4 pipeline(s) (split -> model -> test -> select)"
        in done.stdout
    )


def test_cli_reports_broken_specs_with_file_and_line(specs: Path) -> None:
    by_id = {case.id: case for case in CASES}
    # One per file: bad YAML, latest tag, unknown key, repos.yaml; and no cascade of errors.
    broken = [
        by_id[i] for i in ("bad-yaml-indent", "latest-tag", "env-not-string", "repos-unknown-key")
    ]
    lines = {case.id: _break(specs, case) for case in broken}
    done = _pachsync("--specs", "specs", cwd=specs.parent)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    for case in broken:
        assert f"specs/{case.file}:{lines[case.id]}: " in done.stdout, done.stdout
    assert done.stdout.splitlines()[-1] == "5 error(s) in 4 file(s): specs is invalid"
    latest_line = lines["latest-tag"]
    assert f"{latest_line:>4} |   image: pachsyncdemo.azurecr.io/iris-stages:latest" in done.stdout

    as_json = _pachsync("--specs", str(specs), "--format", "json", cwd=ROOT)
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["valid"] is False
    assert {(e["file"], e["line"]) for e in report["errors"]} >= {
        (f"specs/{c.file}", lines[c.id]) for c in broken
    }

    azure = _pachsync("--specs", "specs", "--format", "azure", cwd=specs.parent)
    assert (
        f"##vso[task.logissue type=error;sourcepath=specs/{by_id['latest-tag'].file};linenumber="
        in azure.stdout
    )


def test_cli_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    done = _pachsync("--specs", "nowhere", cwd=tmp_path)
    assert done.returncode == 2
    assert "nowhere" in done.stderr and "Traceback" not in done.stderr
