"""agent.util.safetext and the CLI's output guard, on arbitrary text (hypothesis) and on the
known ways to smuggle an Azure Pipelines logging command through a line.

The subprocess tests of every command and format are in
tests/integration/test_ci_output_injection.py; these check the escaping functions' contracts
and the guard on its own: raw text a command printed by mistake, a traceback, chunks that split
`##` from `vso[`, and the project's own `write_trusted` lines passing untouched.
"""

from __future__ import annotations

import io
import json
import re
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.cli import GuardedStream, main
from agent.util.safetext import (
    LineGuard,
    azure_data,
    azure_property,
    json_dumps,
    logging_command,
    md_code,
    md_fence,
    md_text,
    mermaid_label,
    neutralise,
    one_line,
)

# Text rich in what matters: hashes, brackets, `vso`, line breaks, escapes, invisible chars.
PIECES = st.sampled_from(["#", "##", "##vso[", "##VSO[", "##[", "vso[", "[", "]", ";", "%",
                          "%AZP25", "%0A", "%3B", "\n", "\r", "\r\n", "\x1b", "\u2028",
                          "\u2029", "\x85", "\u200b", "\u00ad", "\ufeff", "\udcff", "\t",
                          "`", "|", "<", "&", "a", " ", "é", "\x00", "\x0b", "\x0c"])
HOSTILE = st.lists(st.one_of(PIECES, st.text(max_size=8)), max_size=30).map("".join)
INVISIBLE = re.compile("[\u00ad\u034f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f"
                       "\ufe00-\ufe0f\ufeff]")


def agent_unescape(value: str) -> str:
    """The Azure Pipelines agent's unescaping of a logging command value."""
    for escaped, raw in (("%3B", ";"), ("%0D", "\r"), ("%0A", "\n"), ("%5D", "]")):
        value = value.replace(escaped, raw)
    return value.replace("%AZP25", "%")


def acted_on(text: str) -> list[str]:
    """Lines the agent would run (`##vso[` anywhere, any invisible char skipped) or the log
    viewer would format (`##[` at the start)."""
    out = []
    for line in text.splitlines():
        seen = INVISIBLE.sub("", line).lower()
        if "##vso[" in seen or seen.startswith("##["):
            out.append(line)
    return out


@pytest.mark.fuzz
@given(HOSTILE)
def test_one_line_is_one_safe_printable_line(text: str) -> None:
    shown = one_line(text)
    assert shown.isprintable() and len(shown.splitlines()) <= 1
    assert "##" not in shown and not acted_on(shown)
    shown.encode("utf-8")  # no lone surrogate (an undecodable file name) is left to crash print
    assert one_line(shown) == shown  # idempotent: escaping twice changes nothing


@pytest.mark.fuzz
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)))
def test_one_line_leaves_ordinary_text_alone(text: str) -> None:
    assert one_line(text) == text.replace("##", "#\\x23")


@pytest.mark.parametrize(("raw", "shown"), [
    ("a\nb", "a\\nb"), ("a\rb", "a\\rb"), ("\x1b[31m", "\\x1b[31m"), ("a\u2028b", "a\\u2028b"),
    ("x##vso[task.complete]", "x#\\x23vso[task.complete]"), ("#\u200b#vso[", "#\\u200b#vso["),
    ("bad\udcffname", "bad\\udcffname"), ("tab\there", "tab\\there"), ("ok: é", "ok: é"),
])
def test_one_line_examples(raw: str, shown: str) -> None:
    assert one_line(raw) == shown


@pytest.mark.fuzz
@given(HOSTILE)
def test_azure_escaping_is_exactly_reversed_by_the_agent(text: str) -> None:
    data, prop = azure_data(text), azure_property(text)
    assert agent_unescape(data) == text and agent_unescape(prop) == text
    assert not set("\r\n") & set(data) and not set("\r\n;]") & set(prop)


def test_azure_escaping_matches_the_documentation() -> None:
    assert azure_data("100%\r\n;]") == "100%AZP25%0D%0A;]"
    assert azure_property("a;b]c%\n") == "a%3Bb%5Dc%AZP25%0A"


@pytest.mark.fuzz
@given(HOSTILE, HOSTILE)
def test_a_logging_command_carries_its_values_and_nothing_else(path: str, message: str) -> None:
    line = logging_command("task.logissue", {"type": "error", "sourcepath": path,
                                             "linenumber": 3}, message)
    assert len(line.splitlines()) == 1 and line.startswith("##vso[task.logissue ")
    assert line.lower().count("##vso[") == 1 and "##[" not in line
    info, _, data = line[len("##vso["):].partition("]")  # the agent's first `]`
    name, _, props = info.partition(" ")
    pairs = dict(p.split("=", 1) for p in props.split(";"))
    assert name == "task.logissue" and set(pairs) == {"type", "sourcepath", "linenumber"}
    assert agent_unescape(pairs["sourcepath"]) == one_line(path)
    assert agent_unescape(data) == one_line(message)


def test_logging_command_refuses_odd_names() -> None:
    with pytest.raises(ValueError):
        logging_command("task.setvariable variable=x", {}, "m")
    with pytest.raises(ValueError):
        logging_command("task.logissue", {"type;x": 1}, "m")


@pytest.mark.fuzz
@given(st.recursive(st.none() | st.booleans() | st.integers() | HOSTILE,
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(HOSTILE, inner, max_size=3), max_leaves=12))
def test_json_stays_the_same_document_without_a_command(doc: Any) -> None:
    for indent in (None, 2):
        text = json_dumps(doc, indent=indent)
        assert json.loads(text) == doc and text.isascii()
        assert "##" not in text and not acted_on(text)


@pytest.mark.fuzz
@given(HOSTILE)
def test_markdown_values_cannot_break_out(text: str) -> None:
    cell = md_text(text)
    assert not set("|`<>[]*_\n\r") & set(cell) and "##" not in cell
    code = md_code(text)
    plain = code.startswith("`") and code.endswith("`") and code.count("`") == 2
    assert plain and not set("|<>&") & set(code) or \
        code.startswith("<code>") and not set("|`*_[]") & set(code[6:-7])
    block = md_fence([text, "x" + text], "diff")
    assert block[0].startswith("```") and block[-1] == block[0][: len(block[-1])]
    assert all(block[0][: len(block[-1])] not in line for line in block[1:-1])
    assert not re.search(r"[\"\[\]()<>{}|#;]", mermaid_label(text).replace("#\\x23", ""))


def feed_all(chunks: list[str], flush_each: bool) -> str:
    guard, out = LineGuard(), []
    for chunk in chunks:
        out.append(guard.feed(chunk))
        if flush_each:
            out.append(guard.flush())
    out.append(guard.end())
    return "".join(out)


@pytest.mark.fuzz
@given(st.lists(HOSTILE, max_size=8), st.booleans())
def test_the_guard_never_lets_a_command_through(chunks: list[str], flush_each: bool) -> None:
    written = feed_all(chunks, flush_each)
    lowered = written.lower()
    assert "##vso[" not in lowered and "##[" not in written
    # however the text was cut into chunks, exactly the `##` of each command is rewritten
    assert written == neutralise("".join(chunks))


@pytest.mark.parametrize("chunks", [
    ["#", "#vso[task.setvariable variable=X]y\n"], ["##", "vso[x.y]z"], ["##v", "so[x.y]"],
    ["ok\r##", "[error]x"], ["##VS", "O[a.b]"], ["#", "#", "[group]"],
])
def test_the_guard_joins_chunks_split_inside_a_command(chunks: list[str]) -> None:
    for flush_each in (False, True):
        written = feed_all(chunks, flush_each)
        assert "##vso[" not in written.lower() and "##[" not in written, written


def test_guarded_stream_passes_trusted_lines_and_neutralises_the_rest() -> None:
    raw = io.StringIO()
    out = GuardedStream(raw)  # type: ignore[arg-type]
    out.write("partial ##vso[task.setvariable variable=A]b")
    out.write_trusted(logging_command("task.logissue", {"type": "error"}, "m"))
    print("##[error] not ours", file=out)
    out.finish()
    lines = raw.getvalue().splitlines()
    assert lines == ["partial #\\x23vso[task.setvariable variable=A]b",
                     "##vso[task.logissue type=error]m", "#\\x23[error] not ours"]


def raw_printer(args: Any) -> int:
    """A command that forgets to escape, then crashes with the value in its traceback."""
    print("name\n##vso[task.setvariable variable=PACHD_ADDRESS]attacker.example")
    print("##[error]fake", file=sys.stderr)
    raise RuntimeError("boom x##vso[task.complete result=Failed]")


def test_the_cli_boundary_neutralises_what_a_command_forgot(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import agent.commands.status as status

    def register(sub: Any) -> None:
        sub.add_parser("status").set_defaults(func=raw_printer)

    monkeypatch.setattr(status, "register", register)
    assert main(["status"]) == 1  # a bug still exits 1, its traceback through the guard
    out, err = capsys.readouterr()
    assert "attacker.example" in out and "RuntimeError: boom" in err
    assert not acted_on(out) and not acted_on(err), (out, err)
    assert sys.stdout is not None and not isinstance(sys.stdout, GuardedStream)  # restored
