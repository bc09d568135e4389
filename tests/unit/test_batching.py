"""The pure parts of datum batching (localpachd.batching): `/pfs/.env` as python-dotenv reads
it back, the datum's variables (worker.datum_vars) against a per-datum process's environment,
and the meeting point of a user process's NextDatum calls and its slot (`Calls`).

python-dotenv is the reader python-pachyderm's `batch_datum()` uses (`load_dotenv`, which
expands `${NAME}` in values); each property is checked on hostile keys and values.
"""

from __future__ import annotations

import io
import os
import string
import threading
from pathlib import Path

import pytest
from dotenv import dotenv_values
from hypothesis import given
from hypothesis import strategies as st

from localpachd.batching import SPARE, Calls, dotenv_text, write_dotenv
from localpachd.datums import Datum, DatumInput, RepoFile
from localpachd.runtime import DatumOutcome
from localpachd.worker import JobContext, build_env, datum_vars, layout
from localpachd.workerapi import EndOfBatch

# What an environment can hold: no NUL anywhere, no '=' in a name.
_value = st.text(st.characters(codec="utf-8", exclude_characters="\x00"))
_name = st.text(st.characters(codec="utf-8", exclude_characters="\x00="), min_size=1)
_tricky = st.sampled_from(["${HOME}", "${", "}", "'", "\\", "\\'", "\n", "\r\n", "#", " # x",
                           "$", '"', "${A:-b}", "export X", "\\${HOME}"])  # fmt: skip
_values = st.lists(st.one_of(_value, _tricky), min_size=0, max_size=4).map("".join)


def _read(text: str) -> dict[str, str | None]:
    """What `load_dotenv(path, override=True)` would set, read as python-dotenv reads it."""
    return dict(dotenv_values(stream=io.StringIO(text), interpolate=True))


def _writable(name: str) -> bool:
    return not any(c in name for c in "'\r\n")


@pytest.mark.fuzz
@given(st.dictionaries(_name, _values, max_size=6))
def test_dotenv_text_reads_back_exactly_what_was_written(env: dict[str, str]) -> None:
    got = _read(dotenv_text(env))
    got.pop("LOCALPACHD_DOLLAR", None)
    assert got == {k: v for k, v in env.items() if _writable(k) and k != "LOCALPACHD_DOLLAR"}


@pytest.mark.parametrize("value", ["${HOME}", "a${X:-y}b", "${", "$${HOME}}", "\\${HOME}"])
def test_a_dollar_brace_survives_python_dotenv_interpolation(value: str) -> None:
    assert _read(dotenv_text({"v": value, "w": "plain"})) == {
        "LOCALPACHD_DOLLAR": "$", "v": value, "w": "plain"}  # fmt: skip


def test_names_that_cannot_be_written_are_left_out() -> None:
    text = dotenv_text({"\ufeffA": "0", "it's": "1", "two\nlines": "2", "ok name": "3",
                        "#x": "4", "": "5"})  # fmt: skip
    assert _read(text) == {"\ufeffA": "0", "ok name": "3", "#x": "4"}


def test_write_dotenv_replaces_the_file_and_never_follows_a_link(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("keep")
    (tmp_path / ".env").symlink_to(target)
    with pytest.raises(OSError):
        write_dotenv(tmp_path / ".env", {"A": "1"})
    assert target.read_text() == "keep"
    (tmp_path / ".env").unlink()
    write_dotenv(tmp_path / ".env", {"A": "1", "B": "x y"})
    write_dotenv(tmp_path / ".env", {"A": "2"})
    assert _read((tmp_path / ".env").read_text()) == {"A": "2"}


# ---------------------------------------------------------------- datum_vars


def _datum(*names: str) -> Datum:
    return Datum(tuple(
        DatumInput(name=n, project="default", repo=n, branch="master", commit=f"c-{n}",
                   path=f"/{n}.csv", hash="h", files=(RepoFile(f"/{n}.csv", "h", 1),))
        for n in names))  # fmt: skip


@pytest.mark.parametrize("secret", [{}, {"TOKEN": "s3cret"}, {"SHARED": "from-secret"}])
def test_datum_vars_are_what_build_env_adds_and_never_a_secret(
    tmp_path: Path, secret: dict[str, str]
) -> None:
    ctx = JobContext("default", "p", "j1", "j1", ("python3",), env={
        "SHARED": "from-env", "OUT": "/pfs/out", "PLAIN": "x"}, secret_env=secret)  # fmt: skip
    d, pfs_root, base = _datum("a", "b"), tmp_path / "pfs", {"PATH": "/bin", "HOME": "/h"}
    full = build_env(ctx, d, pfs_root, base)
    mine = datum_vars(ctx, d, pfs_root)
    assert {k: v for k, v in full.items() if k in mine} == mine
    assert set(full) - set(mine) <= {"PATH", "HOME", *secret}
    assert not set(mine) & set(secret)
    assert mine["a"] == str(pfs_root / "a" / "a.csv") and mine["b_COMMIT"] == "c-b"
    assert mine["OUT"] == str(pfs_root / "out") and mine["PACH_DATUM_ID"] == d.id


# ---------------------------------------------------------------- Calls


def _ask(calls: Calls, error: str, got: list[object]) -> threading.Thread:
    def call() -> None:
        try:
            got.append(calls.next_datum(error))
        except EndOfBatch:
            got.append(EndOfBatch)

    t = threading.Thread(target=call, daemon=True)
    t.start()
    return t


def test_calls_hand_each_error_to_the_slot_and_its_answer_back() -> None:
    calls, got = Calls(), list[object]()
    t = _ask(calls, "", got)
    assert calls.wait(60) == ("asked", "")
    calls.answer({"A": "1"})
    t.join(60)
    assert got == [{"A": "1"}]
    t = _ask(calls, "ValueError('x')", got)
    assert calls.wait(60) == ("asked", "ValueError('x')")
    calls.end()  # the slot is done: the held call gets EndOfBatch, as does any later one
    t.join(60)
    _ask(calls, "", got).join(60)
    assert got[1:] == [EndOfBatch, EndOfBatch]
    assert calls.wait(0) is None  # a call after the end is never handed to the slot


def test_calls_report_the_exit_after_any_call_made_before_it() -> None:
    calls, got = Calls(), list[object]()
    t = _ask(calls, "", got)
    assert calls.wait(60) == ("asked", "")
    calls.exited(DatumOutcome(3))
    assert calls.wait(0) == ("exited", DatumOutcome(3))
    calls.end()
    t.join(60)
    assert got == [EndOfBatch] and not t.is_alive()


def test_dotenv_of_a_whole_environment_round_trips() -> None:
    env = {k: v for k, v in os.environ.items() if _writable(k)}
    env["odd"] = string.printable
    got = _read(dotenv_text(env))
    got.pop("LOCALPACHD_DOLLAR", None)
    assert got == env


# ---------------------------------------------------------------- a slot's tree


def test_layout_keeps_the_slot_pfs_directory_and_what_it_spares(tmp_path: Path) -> None:
    """A batching slot's process has /pfs bound to `<slot>/pfs` and its secrets to
    `<slot>/secrets/*`: datum after datum, both must stay the same directories."""
    root = tmp_path / "slot-0"

    def put(f: RepoFile, dest: Path) -> None:
        dest.write_text(f.path)

    pfs = layout(_datum("a"), root, put, SPARE)
    (root / "secrets" / "0").mkdir(parents=True)
    (root / "secrets" / "0" / "key").write_text("v")
    (pfs / ".env").write_text("a='1'\n")
    (pfs / "out" / "left").write_text("x")
    ino = pfs.stat().st_ino
    for names in (("b",), ("a", "b"), ()):
        pfs = layout(_datum(*names), root, put, SPARE)
        assert pfs.stat().st_ino == ino
        assert sorted(os.listdir(pfs)) == sorted([*names, "out"])
        assert (root / "secrets" / "0" / "key").read_text() == "v"
    layout(_datum("a"), root, put)  # nothing spared: the per-datum path
    assert not (root / "secrets").exists()


def test_a_zygote_holds_no_slot_token_only_the_placeholder_its_children_fill() -> None:
    """A warm slot process is a fork: /proc/<pid>/environ shows the zygote's startup block, so
    the zygote gets a placeholder there (never the first slot's token or port, which every
    later fork would show) and each child writes its own token over it (warm.child)."""
    from localpachd import peercheck, workerapi
    from localpachd.warm import child, pool

    assert (child.TOKEN_ENV, pool.PORT_ENV) == (workerapi.WORKER_TOKEN_ENV, workerapi.PORT_ENV)
    env = {"PATH": "/bin", workerapi.WORKER_TOKEN_ENV: "ab" * 16, workerapi.PORT_ENV: "4242"}
    assert pool.zygote_env(env) == {"PATH": "/bin",
                                    workerapi.WORKER_TOKEN_ENV: peercheck.PLACEHOLDER}  # fmt: skip
