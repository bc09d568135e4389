"""No value from a repository or a cluster can become an Azure Pipelines logging command.

The Azure Pipelines agent runs the first `##vso[area.event ...]` it finds anywhere in a line of
a step's stdout or stderr (a bare CR ends a line), and its log viewer formats lines starting with
`##[`. A pull request controls file names, YAML keys and values, and so spec error texts and
snippets; what was applied controls annotation values the cluster hands back. Each case below
builds hostile specs in a temp git tree (file names and values holding `\\n##vso[...]`, `\\r`,
`##[error]`, U+2028, an invisible character between the hashes, a mid-line `##vso[`, an upper
case `##VSO[`), runs the real `pachsync` as a subprocess in every output format — validate,
plan, apply --dry-run, apply, status and bump-image, against a real localpachd — and reads
stdout and stderr as the agent would. Only the azure format's own `##vso[task.logissue ...]`
lines may hold a command, and their properties and message must decode to one safe line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.gitops import git

from agent.util.safetext import one_line

ROOT = Path(__file__).resolve().parents[2]
PACHSYNC = Path(sys.executable).parent / "pachsync"
ATTACKER = "attacker.example:30650"

# Each payload would set a variable, end the build or fake an error line if printed raw.
PAYLOADS = {
    "newline": f"\n##vso[task.setvariable variable=PACHD_ADDRESS]{ATTACKER}\n",
    "cr": "\r##vso[task.setvariable variable=PACHD_TOKEN]cr-payload",
    "format": "\n##[error]fake-error-line",
    "midline": "x##vso[task.complete result=Failed]midline-payload",
    "u2028": "\u2028##vso[task.setvariable variable=A]u2028-payload",
    "ignorable": "#\u200b#vso[task.setvariable variable=B]zwsp-payload",
    "upper": "##VSO[task.setvariable variable=C]upper-payload",
    "ansi": "\x1b[2K\r##[group]ansi-payload",
}
MARKERS = ("attacker.example", "cr-payload", "fake-error-line", "midline-payload",
           "u2028-payload", "zwsp-payload", "upper-payload", "ansi-payload")
LOGISSUE_KEYS = {"type", "sourcepath", "linenumber"}
# Default-ignorable and other invisible characters a culture-aware search would skip.
INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
                       "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\x00-\x08]")


def agent_unescape(value: str) -> str:
    """The agent's unescaping of a logging command value (Command.cs, then %AZP25)."""
    for escaped, raw in (("%3B", ";"), ("%0D", "\r"), ("%0A", "\n"), ("%5D", "]")):
        value = value.replace(escaped, raw)
    return value.replace("%AZP25", "%")


def parse_command(line: str) -> tuple[str, dict[str, str], str] | None:
    """What the agent would run for `line` (Command.TryParse), or None."""
    start = line.find("##vso[")
    end = line.find("]", start)
    if start < 0 or end < 0:
        return None
    info = line[start + len("##vso["):end]
    name, _, props = info.partition(" ")
    properties = {}
    for pair in filter(None, props.split(";")):
        key, sep, value = pair.partition("=")
        if sep and key and value:
            properties[key.lower()] = agent_unescape(value)
    return name, properties, agent_unescape(line[end + 1:])


def problems(text: str, where: str, logissue_ok: bool = False) -> list[str]:
    """Every line of `text` the agent or its log viewer would act on, unless it is one of the
    project's own `task.logissue` commands whose values decode to one safe line."""
    found = []
    for line in text.splitlines():  # \r, \n, U+2028 ... all end a line here
        seen = INVISIBLE.sub("", line)
        lowered = seen.lower()
        if lowered.lstrip().startswith("##["):
            found.append(f"{where}: formatting command: {line!r}")
        if "##vso[" not in lowered:
            continue
        command = parse_command(line)
        own = logissue_ok and line.startswith("##vso[task.logissue ") and \
            lowered.count("##vso[") == 1 and command is not None
        if not own:
            found.append(f"{where}: logging command: {line!r}")
            continue
        assert command is not None
        _, props, message = command
        safe = all(v == one_line(v) and "##" not in v for v in (*props.values(), message))
        if set(props) - LOGISSUE_KEYS or props.get("type") not in ("error", "warning") \
                or not props.get("linenumber", "").isdigit() or not safe:
            found.append(f"{where}: our logissue line is not escaped: {line!r}")
    return found


def pachsync(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "PACH_CONFIG": str(cwd / "none.json"),
           "PYTHONIOENCODING": "utf-8", "LANG": "C.UTF-8"}
    return subprocess.run([str(PACHSYNC), *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, encoding="utf-8", errors="surrogateescape", timeout=300)


def check(proc: subprocess.CompletedProcess[str], what: str, logissue_ok: bool = False,
          markers: tuple[str, ...] = ()) -> None:
    assert "Traceback" not in proc.stderr, f"{what}: {proc.stderr[-2000:]}"
    found = problems(proc.stdout, f"{what} stdout", logissue_ok) + \
        problems(proc.stderr, f"{what} stderr")
    assert not found, "\n".join(found)
    both = proc.stdout + proc.stderr
    missing = [m for m in markers if m not in both]
    assert not missing, f"{what}: the hostile values never reached the output: {missing}"


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Path]:
    """A git work tree holding a copy of the project's specs/, committed."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(ROOT / "specs", repo / "specs")
    shutil.copytree(ROOT / "data", repo / "data")  # the data specs/repos.yaml declares
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "specs")
    yield repo


def hostile_invalid_specs(specs: Path) -> None:
    """Invalid specs whose errors quote hostile file names, keys and values (and snippets)."""
    split = (specs / "pipelines" / "split.yaml").read_text()
    for key, payload in PAYLOADS.items():
        (specs / "pipelines" / f"notes{payload}.json").write_text("{}")  # "not read" warning
        (specs / "pipelines" / f"{key}{payload}.yaml").write_text(split)  # name != file name
    bad = split.replace("name: split", f"name: {json.dumps('split' + PAYLOADS['newline'])}")
    bad = bad.replace("    glob: /", "    glob: /\n    " + json.dumps(PAYLOADS["format"]) + ": 1")
    bad = bad.replace("iris-stages:0.1.0", "iris-stages:" + PAYLOADS["midline"].strip("x"))
    (specs / "pipelines" / "split.yaml").write_text(
        bad + f"unknown_{'x' * 3}: midline x##vso[task.setvariable variable=S]snippet-payload\n")


def test_validate_never_prints_a_foreign_logging_command(tree: Path) -> None:
    hostile_invalid_specs(tree / "specs")
    for fmt in ("text", "json", "azure"):
        proc = pachsync(tree, "validate", "--specs", "specs", "--format", fmt)
        assert proc.returncode == 1, proc.stderr
        check(proc, f"validate --format {fmt}", logissue_ok=fmt == "azure", markers=MARKERS)
        if fmt == "json":
            doc = json.loads(proc.stdout)  # still valid JSON, and the values are intact
            assert any(PAYLOADS["newline"] in e["file"] for e in doc["warnings"])
        if fmt == "azure":
            issues = [parse_command(line) for line in proc.stdout.splitlines()
                      if line.startswith("##vso[")]
            files = {c[1]["sourcepath"] for c in issues if c}
            assert "specs/pipelines/split.yaml" in files  # ordinary paths stay exact
            assert one_line(f"specs/pipelines/notes{PAYLOADS['newline']}.json") in files


def test_errors_on_stderr_never_print_a_foreign_logging_command(tree: Path,
                                                                localpachd: Any) -> None:
    hostile_invalid_specs(tree / "specs")
    for argv in (["plan"], ["plan", "--exit-code"], ["apply"]):
        proc = pachsync(tree, *argv, "--pachd", localpachd.address, "--specs", "specs")
        assert proc.returncode in (1, 2), proc.stderr
        check(proc, " ".join(argv), markers=MARKERS)


def hostile_valid_specs(specs: Path) -> None:
    """Valid specs whose values hold every payload: each pipeline's description and one env
    value hold one payload each (a diff shows at most 120 characters of a value)."""
    payloads = iter(PAYLOADS.values())
    for name in ("split", "model", "test", "select"):
        path = specs / "pipelines" / f"{name}.yaml"
        line = f"description: {json.dumps(next(payloads))}\n"
        text = re.sub(r"description: >-\n(  .*\n)+", lambda _, s=line: s, path.read_text())
        env = f"    HOSTILE: {json.dumps(next(payloads))}\n"
        if "\n  env:\n" in text:  # select.yaml has env already
            text = text.replace("\n  env:\n", "\n  env:\n" + env)
        else:
            text = text.replace("  image_pull_secrets:", "  env:\n" + env + "  image_pull_secrets:")
        path.write_text(text)


def test_plan_apply_status_never_print_a_foreign_logging_command(tree: Path,
                                                                 localpachd: Any) -> None:
    source_id = "ci" + PAYLOADS["newline"] + PAYLOADS["midline"]  # stored in the cluster
    addr = ["--pachd", localpachd.address, "--specs", "specs", "--source-id", source_id]
    first = pachsync(tree, "apply", *addr)
    assert first.returncode == 0, first.stderr
    check(first, "apply (plain specs)", markers=("attacker.example",))
    hostile_valid_specs(tree / "specs")
    git(tree, "commit", "-q", "-am", "hostile values")
    runs = [[*addr, "--format", fmt] for fmt in ("text", "json", "markdown")]
    for argv in runs:
        proc = pachsync(tree, "plan", *argv)
        assert proc.returncode == 0, proc.stderr
        check(proc, f"plan {argv[-1]}", markers=MARKERS)
        if argv[-1] == "json":
            diffs = json.loads(proc.stdout)["pipelines"]
            assert {d["git"] for p in diffs for d in p["diffs"] if d["path"] == "description"} \
                == set(list(PAYLOADS.values())[::2])  # the values themselves are intact
    for fmt in ("text", "json"):
        proc = pachsync(tree, "apply", *addr, "--dry-run", "--format", fmt)
        assert proc.returncode == 0, proc.stderr
        check(proc, f"apply --dry-run --format {fmt}", markers=MARKERS)
    applied = pachsync(tree, "apply", *addr)
    assert applied.returncode == 0, applied.stderr
    check(applied, "apply", markers=MARKERS)
    for fmt in ("text", "json"):
        proc = pachsync(tree, "status", "--pachd", localpachd.address, "--format", fmt)
        assert proc.returncode == 0, proc.stderr
        shown = ("attacker.example", "midline-payload") if fmt == "json" else ()  # managed-by
        check(proc, f"status --format {fmt}", markers=shown)


def test_bump_image_never_prints_a_foreign_logging_command(tree: Path) -> None:
    specs = tree / "specs" / "pipelines"
    for key, payload in PAYLOADS.items():
        shutil.copy(specs / "split.yaml", specs / f"{key}{payload}.yaml")
    for fmt in ("text", "json"):
        proc = pachsync(tree, "bump-image", "pachsyncdemo.azurecr.io/iris-stages",
                        "0123456789abcdef0123456789abcdef01234567", "--specs", "specs",
                        "--dry-run", "--format", fmt)
        assert proc.returncode == 0, proc.stderr
        check(proc, f"bump-image --format {fmt}", markers=MARKERS)
