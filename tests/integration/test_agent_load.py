"""`pachsync load`: files and directories into input repos, 1.x-style `--split-lines` names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    assert main(["load", "parameters", str(src), "--split-lines",
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
    args = ["load", "params", str(src), "--dest", "/", "--split-lines",
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
