"""bump-image's pure part: image reference parsing, tag policy, the line rewrite and its proof.

Runs on the project's real specs/ (copied) and on small texts that exercise every YAML style the
rewrite must keep byte-identical.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agent.bump import (
    check_image,
    new_reference,
    parse_image_ref,
    plan_bump,
    rewrite_text,
    verify_rewrite,
    write_bump,
)
from agent.cli import main
from agent.errors import PachsyncError, UsageError

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "pachsyncdemo.azurecr.io/iris-stages"


@pytest.mark.parametrize(
    ("ref", "repo", "tag", "digest"),
    [
        ("acr.io/iris-stages:0.1.0", "acr.io/iris-stages", "0.1.0", None),
        ("localhost:5000/a/b:v1", "localhost:5000/a/b", "v1", None),
        ("localhost:5000/a/b", "localhost:5000/a/b", None, None),
        ("python:3.11-slim", "python", "3.11-slim", None),
        ("acr.io/x@sha256:" + "a" * 64, "acr.io/x", None, "sha256:" + "a" * 64),
        ("acr.io/x:v2@sha256:" + "b" * 64, "acr.io/x", "v2", "sha256:" + "b" * 64),
    ],
)
def test_parse_image_ref(ref: str, repo: str, tag: str | None, digest: str | None) -> None:
    parsed = parse_image_ref(ref)
    assert (parsed.repository, parsed.tag, parsed.digest) == (repo, tag, digest)


@pytest.mark.parametrize("tag", ["latest", "LATEST", "", "  ", "@", "bad tag", "-x", "a" * 129])
def test_mutable_or_malformed_tags_are_refused(tag: str) -> None:
    with pytest.raises(UsageError):
        new_reference(IMAGE, tag)


def test_tags_and_digests_make_references() -> None:
    assert new_reference(IMAGE, "3f2c1ab") == f"{IMAGE}:3f2c1ab"
    digest = "sha256:" + "c" * 64
    assert new_reference(IMAGE, digest) == f"{IMAGE}@{digest}"
    assert new_reference(IMAGE, "@" + digest) == f"{IMAGE}@{digest}"


@pytest.mark.parametrize("image", [f"{IMAGE}:v1", f"{IMAGE}@sha256:" + "d" * 64, "", "a b"])
def test_image_must_be_a_bare_repository(image: str) -> None:
    with pytest.raises(UsageError):
        check_image(image)


STYLES = """\
# image: pachsyncdemo.azurecr.io/iris-stages:0.1.0   <- a comment, never rewritten
transform:
  image: pachsyncdemo.azurecr.io/iris-stages:0.1.0  # trailing comment kept
  cmd: [python3, -m, stages.split]
sidecars:
  - image: "pachsyncdemo.azurecr.io/iris-stages:0.1.0"
  - image: 'pachsyncdemo.azurecr.io/iris-stages@sha256:{d}'
  - image: pachsyncdemo.azurecr.io/iris-stages-gpu:0.1.0
  - image: other.azurecr.io/iris-stages:0.1.0
description: "image: pachsyncdemo.azurecr.io/iris-stages:0.1.0 in a string"
""".replace("{d}", "e" * 64)


def test_rewrite_changes_only_the_matching_refs_and_keeps_every_other_byte() -> None:
    new_ref = f"{IMAGE}:abc1234"
    new, changes = rewrite_text(STYLES, IMAGE, new_ref)
    assert [c.line for c in changes] == [3, 6, 7]
    old_lines, new_lines = STYLES.splitlines(), new.splitlines()
    assert new_lines[2] == f"  image: {new_ref}  # trailing comment kept"
    assert new_lines[5] == f'  - image: "{new_ref}"'
    assert new_lines[6] == f"  - image: '{new_ref}'"
    untouched = [i for i in range(len(old_lines)) if i not in (2, 5, 6)]
    assert [old_lines[i] for i in untouched] == [new_lines[i] for i in untouched]
    verify_rewrite(STYLES, new, IMAGE, new_ref, "styles.yaml", changes)
    again, more = rewrite_text(new, IMAGE, new_ref)
    assert (again, more) == (new, ())


@pytest.mark.parametrize("ending", [b"\r\n", b"\r", b"\n"])
def test_a_spec_file_keeps_its_line_endings_on_disk(tmp_path: Path, ending: bytes) -> None:
    spec = tmp_path / "specs" / "pipelines" / "p.yaml"
    spec.parent.mkdir(parents=True)
    lines = [b"# keep", b"transform:", b"  image: acr.io/x:1", b"  cmd: [a]", b""]
    spec.write_bytes(ending.join(lines))
    write_bump(plan_bump(tmp_path / "specs", "acr.io/x", "2"))
    assert spec.read_bytes() == ending.join(lines).replace(b"acr.io/x:1", b"acr.io/x:2")


def test_crlf_and_json_specs_are_rewritten_in_place() -> None:
    crlf = "transform:\r\n  image: acr.io/x:1\r\n  cmd: [a]\r\n"
    new, changes = rewrite_text(crlf, "acr.io/x", "acr.io/x:2")
    assert new == "transform:\r\n  image: acr.io/x:2\r\n  cmd: [a]\r\n" and len(changes) == 1
    doc = json.dumps({"transform": {"image": "acr.io/x:1", "cmd": ["a"]}}, indent=2) + "\n"
    new, changes = rewrite_text(doc, "acr.io/x", "acr.io/x:2")
    assert json.loads(new) == {"transform": {"image": "acr.io/x:2", "cmd": ["a"]}}
    assert len(changes) == 1
    verify_rewrite(doc, new, "acr.io/x", "acr.io/x:2", "p.json", changes)


def test_a_ref_in_flow_style_is_reported_not_silently_left_behind() -> None:
    text = "transform: {image: acr.io/x:1, cmd: [a]}\n"
    new, changes = rewrite_text(text, "acr.io/x", "acr.io/x:2")
    assert changes == ()
    with pytest.raises(PachsyncError, match="form bump-image does not rewrite"):
        verify_rewrite(text, new, "acr.io/x", "acr.io/x:2", "p.yaml", changes)


def test_verify_rejects_a_rewrite_that_changed_anything_else() -> None:
    text = "transform:\n  image: acr.io/x:1\n"
    forged = "transform:\n  image: acr.io/x:2\n"
    with pytest.raises(PachsyncError):
        verify_rewrite(text, forged, "acr.io/x", "acr.io/x:2", "p.yaml", ())
    forged = "transform:\n  image: acr.io/x:2\n  extra: 1\n"
    with pytest.raises(PachsyncError):
        verify_rewrite(text, forged, "acr.io/x", "acr.io/x:2", "p.yaml", ())


def test_the_project_specs_get_exactly_one_line_changed_each(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    shutil.copytree(ROOT / "specs", specs)
    plan = plan_bump(specs, IMAGE, "0123abc")
    pipelines = sorted(p.name for p in (specs / "pipelines").glob("*.yaml"))
    assert sorted(f.path.name for f in plan.files) == pipelines
    assert all(len(f.changes) == 1 for f in plan.files)
    before = {p: p.read_bytes() for p in specs.rglob("*.yaml")}
    write_bump(plan)
    for path, old in before.items():
        new = path.read_bytes()
        diff = [(a, b) for a, b in zip(old.splitlines(), new.splitlines(), strict=True) if a != b]
        if path.name == "repos.yaml":
            assert diff == []
        else:
            assert len(diff) == 1 and diff[0][1].endswith(b":0123abc")
    assert plan_bump(specs, IMAGE, "0123abc").files == ()


def test_cli_rewrites_then_reports_a_noop_with_exit_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    specs = tmp_path / "specs"
    shutil.copytree(ROOT / "specs", specs)
    args = ["bump-image", IMAGE, "feed123", "--specs", str(specs), "--format", "json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["status"] == "changed" and len(first["files"]) == 4
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["status"] == "unchanged" and second["files"] == [] and second["commit"] is None
    assert main(["bump-image", IMAGE, "latest", "--specs", str(specs)]) == 2
    assert "mutable tag" in capsys.readouterr().err
    assert main(["bump-image", "acr.io/nope", "v1", "--specs", str(specs)]) == 2
    assert IMAGE in capsys.readouterr().err  # the hint lists the images that are there


def test_dry_run_shows_the_changes_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    specs = tmp_path / "specs"
    shutil.copytree(ROOT / "specs", specs)
    before = {p: p.read_bytes() for p in specs.rglob("*.yaml")}
    assert main(["bump-image", IMAGE, "c0ffee1", "--specs", str(specs), "--dry-run",
                 "--commit", "--push"]) == 0  # no git repo needed: nothing is committed
    out = capsys.readouterr().out
    assert "4 file(s) would change (dry run)" in out and out.count(":c0ffee1") == 5
    assert {p: p.read_bytes() for p in specs.rglob("*.yaml")} == before
