"""`pachsync load`: files and directories into input repos; `--split-lines` names line files by
their value (or by line number as Pachyderm 1.x, with --line-names index); a split load that
no input glob would see is refused; a path that is not a file or a folder is named for what it
is (the bug: `load raw_data /dev/null` said "no such file")."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _paths(client: Any, repo: str) -> list[str]:
    return sorted(f.file.path for f in client.walk_file((repo, "master"), "/")
                  if not f.file.path.endswith("/"))


def test_split_lines_names_like_pachyderm_1x(localpachd: Any, pach_client: Any,
                                             capsys: Any) -> None:
    pach_client.create_repo("parameters")
    src = ROOT / "data" / "parameters" / "c_parameters.txt"
    lines = src.read_bytes().splitlines(keepends=True)
    assert main(["load", "parameters", str(src), "--split-lines", "--line-names", "index",
                 "--pachd", localpachd.address]) == 0
    assert f"loaded {len(lines)} file(s)" in capsys.readouterr().out
    paths = _paths(pach_client, "parameters")
    assert paths[0] == "/c_parameters.txt/0000000000000000"
    assert paths[10] == "/c_parameters.txt/000000000000000a" and len(paths) == 11
    got = pach_client.get_file(("parameters", "master"), paths[10]).read()
    assert got == lines[10]


def test_directory_with_dest_root_and_reload_drops_stale_chunks(
        localpachd: Any, pach_client: Any, tmp_path: Path) -> None:
    pach_client.create_repo("params")
    src = tmp_path / "grid"
    src.mkdir()
    (src / "a.txt").write_text("1\n2\n3\n")
    (src / "b.txt").write_text("x\n")
    args = ["load", "params", str(src), "--dest", "/", "--split-lines", "--line-names", "index",
            "--pachd", localpachd.address]
    assert main(args) == 0
    assert len(_paths(pach_client, "params")) == 4
    (src / "a.txt").write_text("1\n")
    assert main(args) == 0
    assert _paths(pach_client, "params") == ["/a.txt/0000000000000000",
                                             "/b.txt/0000000000000000"]


def test_plain_file_defaults_to_its_base_name(localpachd: Any, pach_client: Any) -> None:
    pach_client.create_repo("raw_data")
    assert main(["load", "raw_data", str(ROOT / "data" / "iris.csv"),
                 "--pachd", localpachd.address]) == 0
    assert _paths(pach_client, "raw_data") == ["/iris.csv"]
    assert main(["load", "raw_data", str(ROOT / "data" / "iris.csv"), "--dest", "x/y.csv",
                 "--pachd", localpachd.address]) == 0
    assert "/x/y.csv" in _paths(pach_client, "raw_data")


def test_missing_repo_or_source_is_a_clear_error(localpachd: Any, tmp_path: Path,
                                                 capsys: Any) -> None:
    assert main(["load", "nope", str(tmp_path / "missing"), "--pachd", localpachd.address]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    (tmp_path / "f").write_text("x")
    assert main(["load", "nope", str(tmp_path / "f"), "--pachd", localpachd.address]) == 2
    assert "nope" in capsys.readouterr().err


def test_split_lines_are_named_by_value_so_an_insert_adds_one_file(
        localpachd: Any, pach_client: Any, tmp_path: Path, capsys: Any) -> None:
    pach_client.create_repo("parameters")
    src = tmp_path / "c_parameters.txt"
    src.write_text("0.5\n2.0\n\n2.0\n")  # a blank line skipped, a repeated value kept once
    args = ["load", "parameters", str(src), "--split-lines", "--pachd", localpachd.address]
    assert main(args) == 0
    assert _paths(pach_client, "parameters") == ["/c_parameters.txt/0.5", "/c_parameters.txt/2.0"]
    src.write_text("0.1\n0.5\n2.0\n")
    assert main(args) == 0
    assert _paths(pach_client, "parameters") == [
        "/c_parameters.txt/0.1", "/c_parameters.txt/0.5", "/c_parameters.txt/2.0"]
    diff = list(pach_client.diff_file(("parameters", "master"), "/c_parameters.txt/"))
    assert [d.new_file.file.path for d in diff if d.new_file.file.path.endswith("0.1")] == [
        "/c_parameters.txt/0.1"]
    assert len([d for d in diff if d.new_file.file_type == 1]) == 1  # only the new value
    assert pach_client.get_file(("parameters", "master"), "/c_parameters.txt/0.1").read() == \
        b"0.1\n"


@pytest.mark.parametrize("special", ["/dev/null", "fifo"])
def test_a_device_or_fifo_is_named_for_what_it_is(localpachd: Any, tmp_path: Path,
                                                   capsys: Any, special: str) -> None:
    path = special
    if special == "fifo":
        path = str(tmp_path / "fifo")
        os.mkfifo(path)
    assert main(["load", "raw_data", path, "--pachd", localpachd.address]) == 2
    err = capsys.readouterr().err
    assert "no such file" not in err
    assert ("is a character device" if special == "/dev/null" else "is a FIFO") in err, err
    assert "not a regular file or a directory" in err


SPLIT_READER = """{"pipeline": {"name": "model"}, "transform": {"cmd": ["true"]},
 "input": {"cross": [{"pfs": {"name": "c", "repo": "parameters", "glob": "/c_parameters.txt/*"}},
                     {"pfs": {"name": "g", "repo": "parameters",
                              "glob": "/gamma_parameters.txt/*"}}]}}"""


def test_split_lines_where_no_glob_sees_them_is_refused(
        localpachd: Any, pach_client: Any, capsys: Any) -> None:
    import json

    import python_pachyderm

    pach_client.create_repo("parameters")
    pach_client.create_pipeline_from_request(
        python_pachyderm.parse_dict_pipeline_spec(json.loads(SPLIT_READER)))
    params = str(ROOT / "data" / "parameters")
    base = ["load", "parameters", params, "--split-lines", "--pachd", localpachd.address]
    assert main(base) == 2  # the bug: /parameters/c_parameters.txt/... seen by no glob
    err = capsys.readouterr().err
    assert "no input glob of the pipelines reading parameters sees" in err, err
    assert "model reads /c_parameters.txt/*" in err and "--dest /" in err
    assert _paths(pach_client, "parameters") == []  # nothing written
    assert main([*base, "--dest", "/"]) == 0
    assert len(_paths(pach_client, "parameters")) == 18
    assert main([*base, "--dest", "/elsewhere", "--force"]) == 0
    assert main(["load", "parameters", str(ROOT / "data" / "iris.csv"),
                 "--pachd", localpachd.address]) == 0  # a plain load: written, with a warning
    assert "warning: no input glob" in capsys.readouterr().err
