"""`pachsync validate` on specs a careless or hostile pull request can write: every problem is a
`SpecError(file, line, path, message, hint)`, never a traceback, a hang or a memory blow-up.

Classes (issue 12, items 6, 7, 11, 13): bytes YAML refuses (NUL, control characters, bad UTF-8);
a scalar or list where a mapping belongs; keys that are not text; nesting deeper than the reader
allows (flow and block, mappings and inputs); recursive aliases and alias bombs (while small
merge keys keep working); names that end in a newline (Python's `$`); integers and floats
outside the protobuf field's range; durations protobuf refuses; input names Pachyderm refuses
(`out`, duplicates across cross/join/group); files and transactions larger than Pachyderm's
limits. Each case copies the shipped specs to a temp dir and breaks one thing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.errors import SpecError
from agent.specs import check_specs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    copy = tmp_path / "repo" / "specs"
    shutil.copytree(ROOT / "specs", copy)
    shutil.copytree(ROOT / "data", copy.parent / "data")  # the data specs/repos.yaml declares
    return copy


def _edit(specs: Path, file: str, old: str, new: str) -> str:
    path = specs / file
    text = path.read_text()
    assert old in text, f"{old!r} not in {file}"
    text = text.replace(old, new, 1)
    path.write_text(text)
    return text


def _line_of(text: str, marker: str) -> int:
    return text.count("\n", 0, text.index(marker)) + 1


def _errors(specs: Path) -> list[SpecError]:
    report = check_specs(specs, root=specs.parent)
    for error in report.errors + report.warnings:
        assert isinstance(error.line, int) and error.line >= 0, error
        assert error.hint, f"no hint: {error.format()}"
    return list(report.errors)


def _one(errors: list[SpecError], words: str) -> SpecError:
    hits = [e for e in errors if words in e.message]
    assert hits, f"no error with {words!r} in:\n" + "\n".join(e.format() for e in errors)
    return hits[0]


# --- bytes YAML refuses ----------------------------------------------------------------------


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x7f", "\ufffe"])
def test_a_character_yaml_refuses_is_reported_at_its_line(specs: Path, char: str) -> None:
    text = _edit(specs, "pipelines/select.yaml", "  name: select\n", f"  name: sel{char}ect\n")
    error = _one(_errors(specs), "not allowed in YAML")
    assert error.file == "specs/pipelines/select.yaml"
    assert error.line == _line_of(text, "  name: sel")
    assert f"U+{ord(char):04X}" in error.message


def test_invalid_utf8_is_reported_at_its_line(specs: Path) -> None:
    path = specs / "pipelines/select.yaml"
    raw = path.read_bytes().replace(b"  name: select\n", b"  name: sel\xffect\n")
    path.write_bytes(raw)
    error = _one(_errors(specs), "not valid UTF-8")
    assert error.line == raw[: raw.index(b"\xff")].count(b"\n") + 1


@pytest.mark.parametrize("escape", [r"\0", r"\ud800", r"\x00"])
def test_a_string_no_command_can_hold_is_refused(specs: Path, escape: str) -> None:
    text = _edit(specs, "pipelines/split.yaml", "    - --seed\n", f'    - "--se{escape}ed"\n')
    error = _one(_errors(specs), "cannot be sent")
    assert error.line == _line_of(text, '"--se')


@pytest.mark.parametrize(
    "value",
    ["2020-13-45", "2021-02-30 10:00:00", "!!float abc", "!!bool maybe", "!!timestamp x",
     "!!int", "!!float"],
)
def test_a_value_yaml_cannot_build_is_an_error_at_its_line(specs: Path, value: str) -> None:
    # PyYAML builds dates, numbers and booleans with plain Python calls: ValueError, KeyError,
    # AttributeError or IndexError escaped as tracebacks.
    text = _edit(specs, "pipelines/select.yaml", "datum_tries: 2", f"datum_tries: {value}")
    error = _one(_errors(specs), "is not a valid")
    assert error.line == _line_of(text, "datum_tries:") and error.path == "datum_tries"


# --- a value of the wrong shape --------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("pipeline:\n  name: select\n", "pipeline: select\n", "pipeline"),
        ("pipeline:\n  name: select\n", "pipeline: [select]\n", "pipeline"),
        ("pipeline:\n  name: select\n", "pipeline: 3\n", "pipeline"),
        ("  name: select\n", "  name: select\n  project: team\n", "pipeline.project"),
        ("  name: select\n", "  name: select\n  project: [team]\n", "pipeline.project"),
        ("transform:\n", "transform: x\ntransform_was:\n", "transform"),
        ("input:\n  cross:\n", "input: x\ninput_was:\n  cross:\n", "input"),
        ("  cross:\n", "  cross: test\n  cross_was:\n", "input.cross"),
    ],
)
def test_a_scalar_where_a_mapping_belongs_is_an_error(
    specs: Path, old: str, new: str, path: str
) -> None:
    _edit(specs, "pipelines/select.yaml", old, new)
    errors = _errors(specs)
    assert any(e.path == path and e.file == "specs/pipelines/select.yaml" for e in errors), [
        e.format() for e in errors
    ]


@pytest.mark.parametrize(
    ("before", "key"),
    [
        ("pipeline:\n", "1"),
        ("  image: pachsync", "  true"),
        ("    SELECT_TOLERANCE", "    2"),
        ("    SELECT_TOLERANCE", "    null"),
        ("    SELECT_TOLERANCE", "    1.5"),
        ("    SELECT_TOLERANCE", "    2020-01-01"),
        ("    SELECT_TOLERANCE", "    [a, b]"),
    ],
)
def test_keys_that_are_not_text_are_errors_at_their_line(
    specs: Path, before: str, key: str
) -> None:
    # `1: x` next to `a: y` made the unknown-key message sort ints with strings: TypeError.
    indent = key[: len(key) - len(key.lstrip())]
    text = _edit(specs, "pipelines/select.yaml", before, f"{key}: x\n{indent}also_a: y\n{before}")
    error = _one(_errors(specs), "is not text")
    assert error.line == _line_of(text, f"{key}: x")
    assert "quote" in error.hint


# --- nesting ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["[" * 20_000 + "]" * 20_000, "{a: " * 20_000 + "1" + "}" * 20_000],
    ids=["flow-list", "flow-map"],
)
def test_flow_yaml_nested_20000_deep_is_an_error(specs: Path, value: str) -> None:
    text = _edit(specs, "pipelines/select.yaml", "datum_tries: 2", f"datum_tries: {value}")
    error = _one(_errors(specs), "nested more than")
    assert error.line == _line_of(text, "datum_tries:")


def _nested_inputs(depth: int) -> str:
    body, indent = "input:\n", "  "
    for _ in range(depth):
        body += f"{indent}cross:\n{indent}  -\n"
        indent += "    "
    return body + f"{indent}pfs: {{repo: test, glob: /}}\n"


def _replace_input(specs: Path, block: str) -> str:
    path = specs / "pipelines/select.yaml"
    text = path.read_text()
    start, end = text.index("input:\n"), text.index("parallelism_spec:")
    text = text[:start] + block + text[end:]
    path.write_text(text)
    return text


def test_inputs_nested_500_deep_are_an_error(specs: Path) -> None:
    _replace_input(specs, _nested_inputs(500))
    error = _one(_errors(specs), "nested more than")
    assert error.file == "specs/pipelines/select.yaml" and error.line > 1


def test_the_deepest_allowed_spec_validates_even_from_a_deep_call_stack(specs: Path) -> None:
    from agent.specs.yamlread import MAX_DEPTH

    # Each cross level is three YAML levels (mapping, list, item); the document root is one.
    levels = (MAX_DEPTH - 4) // 3
    _replace_input(specs, _nested_inputs(levels))
    depth_used = 400  # a caller already deep in its own stack (the runner, a test framework)

    def dive(n: int) -> list[SpecError]:
        return dive(n - 1) if n else _errors(specs)

    assert sys.getrecursionlimit() >= 1000
    errors = dive(depth_used)
    assert [e for e in errors if "nested" in e.message] == []
    assert [e for e in errors if e.file.endswith("select.yaml")] == []


# --- aliases ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["&x [*x]", "&x {a: *x}", "&x [1, [2, [*x]]]"], ids=["list", "map", "nested"]
)
def test_a_recursive_alias_is_an_error(specs: Path, value: str) -> None:
    text = _edit(specs, "pipelines/select.yaml", "datum_tries: 2", f"datum_tries: {value}")
    error = _one(_errors(specs), "recursive")
    assert error.line == _line_of(text, "datum_tries:")


def _bomb(levels: int, width: int = 9) -> str:
    lines = ["    a0: &a0 [" + ", ".join(['"xxxxxxxxxx"'] * width) + "]"]
    for k in range(1, levels):
        lines.append(f"    a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * width) + "]")
    return "metadata:\n  labels:\n" + "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [4, 6, 9, 12])
def test_an_alias_bomb_is_refused_at_its_alias_with_bounded_memory(
    specs: Path, levels: int
) -> None:
    path = specs / "pipelines/select.yaml"
    text = path.read_text() + _bomb(levels)
    path.write_text(text)
    assert len(_bomb(levels)) < 1600  # the 1.4 KB spec of the issue took 1.17 GB
    tracemalloc.start()
    try:
        errors = _errors(specs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    error = _one(errors, "alias")
    assert "expands" in error.message
    assert text.splitlines()[error.line - 1].lstrip().startswith("a")
    assert "*" in text.splitlines()[error.line - 1]
    assert peak < 32 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_small_anchors_and_merge_keys_keep_working(specs: Path) -> None:
    _edit(
        specs,
        "pipelines/model.yaml",
        "resource_requests:\n  cpu: 0.5\n  memory: 256Mi\n",
        "resource_requests: &res\n  cpu: 0.5\n  memory: 256Mi\n"
        "resource_limits:\n  <<: *res\n  cpu: 1\n"
        "tolerations:\n"
        + "".join(
            f"  - &t{i}\n    key: k{i}\n    operator: EQUAL\n    value: v\n"
            "    effect: NO_SCHEDULE\n"
            for i in range(3)
        )
        + "".join(f"  - {{<<: *t{i}, value: w{i}}}\n" for i in range(3) for _ in range(5)),
    )
    report = check_specs(specs, root=specs.parent)
    assert report.errors == (), [e.format() for e in report.errors]
    model = next(p for p in report.state.pipelines if p.name == "model")  # type: ignore[union-attr]
    assert model.spec["resource_limits"] == {"cpu": 1, "memory": "256Mi"}
    assert len(model.spec["tolerations"]) == 18


# --- names ending in a newline (Python's `$`) --------------------------------------------------


@pytest.mark.parametrize(
    ("file", "old", "new"),
    [
        ("pipelines/model.yaml", "name: c\n", 'name: "c\\n"\n'),
        ("pipelines/model.yaml", "repo: split\n", 'repo: "split\\n"\n'),
        ("pipelines/select.yaml", "    SELECT_TOLERANCE:", '    "SELECT_TOLERANCE\\n":'),
        ("pipelines/model.yaml", "memory: 256Mi", 'memory: "256Mi\\n"'),
        ("pipelines/model.yaml", "image: pachsyncdemo.azurecr.io/iris-stages:0.1.0",
         'image: "pachsyncdemo.azurecr.io/iris-stages:0.1.0\\n"'),
        ("pipelines/model.yaml", "datum_tries: 2", 'datum_tries: 2\ndatum_timeout: "600s\\n"'),
        ("repos.yaml", "- name: parameters\n", '- name: "parameters\\n"\n'),
        ("repos.yaml", "- name: parameters\n", '- name: parameters\n    project: "team\\n"\n'),
    ],
)
def test_a_value_ending_in_a_newline_does_not_match_a_pattern(
    specs: Path, file: str, old: str, new: str
) -> None:
    text = _edit(specs, file, old, new)
    marker = new.split("\n")[-2] if new.endswith("\n") else new.split("\n")[-1]
    errors = [e for e in _errors(specs) if e.file == f"specs/{file}"]
    assert any(e.line == _line_of(text, marker) for e in errors), [e.format() for e in errors]


def test_a_pipeline_name_ending_in_a_newline_is_invalid(specs: Path) -> None:
    from agent.specs.semantic import PIPELINE_NAME

    assert PIPELINE_NAME.fullmatch("select\n") is None
    _edit(specs, "pipelines/select.yaml", "  name: select\n", '  name: "select\\n"\n')
    _one(_errors(specs), "invalid pipeline name 'select\\n'")


def test_every_schema_pattern_anchored_at_the_end_refuses_a_trailing_newline() -> None:
    from agent.specs.schema import pattern_regex

    samples = {
        "^[a-zA-Z0-9_-]+$": "abc",
        "^[a-zA-Z0-9][a-zA-Z0-9_-]*$": "abc",
        "^([0-9]+)(\\.[0-9]{1,9})?s$": "600s",
        "[:@][^/\\s]*$": "a:1",
        "^a(?:@|$)": "a",
        "^a[$]b$": "a$b",
        "^a\\$$": "a$",
    }
    for pattern, good in samples.items():
        compiled = pattern_regex(pattern)
        assert compiled.search(good), pattern
        assert not compiled.search(good + "\n"), pattern


# --- numbers outside their protobuf field ----------------------------------------------------

HUGE = 10**26
INT64_MAX, UINT64_MAX = 2**63 - 1, 2**64 - 1

NUMBER_FIELDS = [
    # (file, old text, new text with {v}, largest value Pachyderm accepts)
    ("pipelines/model.yaml", "constant: 2", "constant: {v}", 2**31 - 1),
    ("pipelines/model.yaml", "datum_tries: 2", "datum_tries: {v}", INT64_MAX),
    ("pipelines/model.yaml", "datum_tries: 2", "datum_tries: 2\ndatum_set_spec: {{number: {v}}}",
     INT64_MAX),
    ("pipelines/model.yaml", "datum_tries: 2",
     "datum_tries: 2\ndatum_set_spec: {{size_bytes: {v}}}", INT64_MAX),
    ("pipelines/model.yaml", "datum_tries: 2",
     "datum_tries: 2\ndatum_set_spec: {{per_worker: {v}}}", INT64_MAX),
    ("pipelines/model.yaml", "datum_tries: 2",
     "datum_tries: 2\ntolerations: [{{key: k, toleration_seconds: {v}}}]", INT64_MAX),
    ("pipelines/model.yaml", "  cmd:\n", "  accept_return_code: [{v}]\n  cmd:\n", INT64_MAX),
    ("pipelines/model.yaml", "  cpu: 0.5",
     "  cpu: 0.5\n  gpu: {{type: nvidia.com/gpu, number: {v}}}", INT64_MAX),
    ("pipelines/split.yaml", "    glob: /\n", "    glob: /\n    trigger: {{commits: {v}}}\n",
     INT64_MAX),
]


@pytest.mark.parametrize("field", NUMBER_FIELDS, ids=lambda f: f[2].split(":")[-2].strip(" {"))
@pytest.mark.parametrize("value", [HUGE, -HUGE, UINT64_MAX + 1])
def test_an_integer_outside_its_field_is_an_error(
    specs: Path, field: tuple[str, str, str, int], value: int
) -> None:
    file, old, new, _ = field
    text = _edit(specs, file, old, new.format(v=value))
    errors = [e for e in _errors(specs) if e.file == f"specs/{file}"]
    assert any(e.line == _line_of(text, str(value)) for e in errors), [e.format() for e in errors]


@pytest.mark.parametrize("field", NUMBER_FIELDS, ids=lambda f: f[2].split(":")[-2].strip(" {"))
def test_the_largest_value_pachyderm_accepts_passes_and_fits_the_request(
    specs: Path, field: tuple[str, str, str, int]
) -> None:
    from agent.cluster.apply import PipelineOp, request_of

    file, old, new, largest = field
    _edit(specs, file, old, new.format(v=largest))
    report = check_specs(specs, root=specs.parent)
    assert report.errors == (), [e.format() for e in report.errors]
    for pipeline in report.state.pipelines:  # type: ignore[union-attr]
        request_of(PipelineOp(pipeline.name, pipeline.spec, file=pipeline.file))
    text = _edit(specs, file, str(largest), str(largest + 1))
    errors = [e for e in _errors(specs) if e.file == f"specs/{file}"]
    assert any(e.line == _line_of(text, str(largest + 1)) for e in errors)


@pytest.mark.parametrize(
    "value",
    ["9" * 5000, "0x" + "f" * 5000, "0b" + "1" * 300, "1:" + "59:" * 300 + "1", "-" + "9" * 40],
    ids=["5000-digits", "hex", "binary", "sexagesimal", "negative"],
)
def test_an_integer_too_long_to_print_is_an_error_not_a_traceback(specs: Path, value: str) -> None:
    # Python refuses to convert ints of more than 4300 digits to or from text: the YAML
    # constructor raised ValueError, and an error message quoting the number would too.
    text = _edit(specs, "pipelines/model.yaml", "constant: 2", f"constant: {value}")
    error = _one(_errors(specs), "far outside")
    assert error.line == _line_of(text, "constant:") and len(error.message) < 200


@pytest.mark.parametrize("value", ["1e39", ".inf", "-.inf", ".nan", "-1", "1.0e400"])
def test_a_cpu_request_outside_a_float32_is_an_error(specs: Path, value: str) -> None:
    text = _edit(specs, "pipelines/model.yaml", "cpu: 0.5", f"cpu: {value}")
    errors = _errors(specs)
    assert any(e.line == _line_of(text, f"cpu: {value}") for e in errors), [
        e.format() for e in errors
    ]


def test_parallelism_above_the_community_edition_limit_is_a_warning(specs: Path) -> None:
    _edit(specs, "pipelines/model.yaml", "constant: 2", "constant: 9")
    report = check_specs(specs, root=specs.parent)
    assert report.errors == ()
    assert any("Community Edition" in w.message for w in report.warnings)


@pytest.mark.parametrize(
    "value",
    ["315576000001s", ".5s", "1.1234567891s", "99999999999999999999999999s", "9" * 5000 + "s"],
    ids=["max+1", "no-units", "10-decimals", "26-digits", "5000-digits"],
)
def test_a_duration_protobuf_refuses_is_an_error(specs: Path, value: str) -> None:
    text = _edit(specs, "pipelines/model.yaml", "datum_tries: 2",
                 f'datum_tries: 2\njob_timeout: "{value}"')
    errors = _errors(specs)
    assert any(e.line == _line_of(text, "job_timeout") for e in errors), [
        e.format() for e in errors
    ]


@pytest.mark.parametrize("value", ["600s", "0.5s", "315576000000s", "1.123456789s", "5.s"])
def test_a_duration_protobuf_accepts_passes(specs: Path, value: str) -> None:
    _edit(specs, "pipelines/model.yaml", "datum_tries: 2",
          f'datum_tries: 2\njob_timeout: "{value}"')
    assert _errors(specs) == []


CRON = "input:\n  cron: {{name: tick, spec: '@every 60s', start: '{start}'}}\n"


@pytest.mark.parametrize(
    "start",
    ["2021-02-29T00:00:00Z", "2020-01-01T24:00:00Z", "2020-01-01T00:00:60Z",
     "0000-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00", "2020-01-01T00:00:00+24:00",
     "2020-01-01T00:00:00.1234567891Z", "2020-01-01 00:00:00Z", "2020-01-01T00:00:00"],
)
def test_a_cron_start_protobuf_refuses_is_an_error(specs: Path, start: str) -> None:
    text = _replace_input(specs, CRON.format(start=start))
    errors = _errors(specs)
    assert any(e.line == _line_of(text, "cron:") and e.path.startswith("input.cron")
               for e in errors), [e.format() for e in errors]


@pytest.mark.parametrize(
    "start", ["2020-02-29T00:00:00Z", "2024-01-31T12:30:00.123456789+05:30", "0001-01-01T00:00:00Z"]
)
def test_a_cron_start_protobuf_accepts_passes(specs: Path, start: str) -> None:
    from agent.cluster.apply import PipelineOp, request_of

    _replace_input(specs, CRON.format(start=start))
    _edit(specs, "pipelines/select.yaml", "    - /pfs/test\n", "    - /pfs/tick\n")
    _edit(specs, "pipelines/select.yaml", "    - /pfs/model\n", "    - /pfs/tick\n")
    report = check_specs(specs, root=specs.parent)
    assert report.errors == (), [e.format() for e in report.errors]
    for pipeline in report.state.pipelines:  # type: ignore[union-attr]
        request_of(PipelineOp(pipeline.name, pipeline.spec, file=pipeline.file))


@pytest.mark.parametrize("patch", ["not json", "[", "{'a': 1}", "[" * 5000 + "]" * 5000])
def test_a_pod_patch_that_is_not_json_is_an_error(specs: Path, patch: str) -> None:
    text = _edit(specs, "pipelines/model.yaml", "datum_tries: 2",
                 f"datum_tries: 2\npod_patch: {json.dumps(patch)}")
    error = _one(_errors(specs), "not valid JSON")
    assert error.line == _line_of(text, "pod_patch")


@pytest.mark.parametrize(
    ("pfs", "words"),
    [
        ("{repo: test, glob: /*, s3: true}", 'glob "/"'),
        ("{repo: test, glob: /, s3: true, lazy: true}", "s3 and lazy"),
        ("{repo: test, glob: /, s3: true, empty_files: true}", "s3 and empty_files"),
    ],
)
def test_s3_inputs_follow_pachyderms_rules(specs: Path, pfs: str, words: str) -> None:
    text = _replace_input(specs, f"input:\n  pfs: {pfs}\n")
    error = _one(_errors(specs), words)
    assert error.line == _line_of(text, "  pfs:")


@pytest.mark.parametrize("combo", ["join", "group", "union"])
def test_s3_inputs_inside_join_group_or_union_are_errors(specs: Path, combo: str) -> None:
    _replace_input(specs, f"input:\n  {combo}:\n    - cross:\n        - pfs: {{repo: test, "
                          "glob: /, s3: true}\n    - pfs: {repo: model, glob: /}\n")
    _one(_errors(specs), f"S3 inputs inside a {combo}")


# --- input names as Pachyderm validates them ---------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ("name: c\n", "name: out\n", "reserved"),
        ("        repo: split\n", "        name: out\n        repo: split\n", "reserved"),
        ("name: c\n", 'name: "../../../var/x"\n', "does not match"),
        ("name: c\n", 'name: ".env"\n', "does not match"),
        ("name: c\n", 'name: ""\n', "does not match"),
    ],
)
def test_an_input_name_pachyderm_refuses_is_an_error(
    specs: Path, old: str, new: str, words: str
) -> None:
    text = _edit(specs, "pipelines/model.yaml", old, new)
    error = _one(_errors(specs), words)
    assert error.line == _line_of(text, new.strip().split("\n")[0])
    assert error.path.endswith(".name")


def test_an_input_reading_a_repo_named_out_needs_a_name(specs: Path) -> None:
    repos = specs / "repos.yaml"
    repos.write_text(repos.read_text() + "  - name: out\n")
    text = _edit(specs, "pipelines/model.yaml", "repo: split\n", "repo: out\n")
    error = _one(_errors(specs), "reserved")
    assert error.line == _line_of(text, "repo: out") and error.path.endswith(".repo")
    assert "name:" in error.hint


@pytest.mark.parametrize(
    ("inputs", "duplicate"),
    [
        # Pachyderm's validateNames: cross/join/group share one namespace, nested too; union
        # children may repeat a name among themselves, but not one used beside the union.
        ("cross: [{pfs: {repo: a, glob: /}}, {cross: [{pfs: {repo: a, glob: /}}]}]", True),
        ("cross: [{pfs: {repo: a, glob: /}}, {union: [{pfs: {repo: a, glob: /}}]}]", True),
        ("join: [{pfs: {repo: a, glob: /}}, {group: [{pfs: {repo: a, glob: /}}]}]", True),
        ("cross: [{pfs: {repo: a, glob: /}}, {pfs: {repo: b, name: a, glob: /}}]", True),
        ("union: [{pfs: {repo: a, glob: /}}, {pfs: {repo: a, glob: /*}}]", False),
        ("union: [{cross: [{pfs: {repo: a, glob: /}}]}, {pfs: {repo: a, glob: /}}]", False),
        ("cross: [{union: [{pfs: {repo: a, glob: /}}]}, {union: [{pfs: {repo: a, glob: /}}]}]",
         True),
    ],
)
def test_input_names_are_unique_as_pachyderm_checks_them(
    specs: Path, inputs: str, duplicate: bool
) -> None:
    repos = specs / "repos.yaml"
    repos.write_text(repos.read_text() + "  - name: a\n  - name: b\n")
    _replace_input(specs, f"input:\n  {inputs}\n")
    errors = [e for e in _errors(specs) if "used more than once" in e.message]
    assert bool(errors) == duplicate, [e.format() for e in errors]
    assert len(errors) <= 1


# --- sizes -----------------------------------------------------------------------------------


def test_a_spec_file_over_the_cap_is_an_error_and_is_not_read_whole(specs: Path) -> None:
    from agent.specs.safefs import MAX_SPEC_BYTES

    path = specs / "pipelines/select.yaml"
    path.write_text(path.read_text() + "description: " + "x" * (25 * 2**20) + "\n")
    error = _one(_errors(specs), "larger than")
    assert error.file == "specs/pipelines/select.yaml" and "1 MiB" in error.message
    assert MAX_SPEC_BYTES == 2**20
    # A sparse 64 GiB file: reading it whole would take minutes and the memory of the machine.
    with path.open("r+b") as handle:
        handle.truncate(64 * 2**30)
    tracemalloc.start()
    try:
        _one(_errors(specs), "larger than")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20


def test_a_spec_just_under_the_cap_still_validates(specs: Path) -> None:
    from agent.specs.safefs import MAX_SPEC_BYTES

    path = specs / "pipelines/split.yaml"
    text = path.read_text()
    path.write_text(text + "#" * (MAX_SPEC_BYTES - len(text.encode()) - 1) + "\n")
    assert path.stat().st_size == MAX_SPEC_BYTES
    assert _errors(specs) == []


def test_requests_that_do_not_fit_one_message_are_errors(specs: Path) -> None:
    from agent.specs.limits import MAX_MESSAGE, request_size_errors
    from agent.specs.semantic import PipelineDoc
    from agent.specs.yamlread import load_yaml

    assert MAX_MESSAGE == 20 * 2**20  # Pachyderm's grpcutil.MaxMsgSize
    docs = [
        PipelineDoc(f"specs/pipelines/p{i}.yaml", f"p{i}",
                    load_yaml(f"pipeline: {{name: p{i}}}\ndescription: {'x' * 3000}\n"))
        for i in range(4)
    ]
    # Each request is about 3 KB of spec plus the 4 KiB kept for the agent's annotations.
    assert request_size_errors(docs, limit=40_000) == []
    [alone] = request_size_errors(docs[:1], limit=5_000)
    assert alone.file == "specs/pipelines/p0.yaml" and "one request" in alone.message
    [together] = request_size_errors(docs, limit=20_000)
    assert "one transaction" in together.message and "p0" in together.message


def test_a_pattern_never_runs_on_a_text_long_enough_to_backtrack(specs: Path) -> None:
    # The image rule `[:@][^/]*$` is quadratic in a run of colons: 16,000 of them took 1.5 s,
    # a million (a 1 MB spec) about 1.5 hours. In a subprocess so a regression fails on the
    # timeout instead of freezing the suite; it finishes in about a second.
    image = ":" * 1_000_000 + "/"
    text = _edit(specs, "pipelines/split.yaml",
                 "image: pachsyncdemo.azurecr.io/iris-stages:0.1.0", f"image: '{image}'")
    script = (
        "import sys; from pathlib import Path; from agent.specs import check_specs\n"
        "r = check_specs(Path(sys.argv[1]), root=Path(sys.argv[1]).parent)\n"
        "print('\\n'.join(f'{e.line}|{e.message}' for e in r.errors))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(specs)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    line = _line_of(text, "image:")
    [error] = [e for e in done.stdout.splitlines() if e.startswith(f"{line}|")]
    assert "(1000003 chars) is longer than 1024 characters" in error


def test_errors_and_messages_stay_small_for_a_huge_document(specs: Path) -> None:
    env = "".join(f"    V{i}: {i}\n" for i in range(3000))
    _edit(specs, "pipelines/select.yaml", "  env:\n", "  env:\n" + env)
    _edit(specs, "pipelines/split.yaml", "image: pachsyncdemo.azurecr.io/iris-stages:0.1.0",
          "image: " + "A" * 100_000)
    errors = _errors(specs)
    assert 1 < len(errors) <= 2 * 101
    assert max(len(e.message) + len(e.path) + len(e.hint) for e in errors) < 1000
    assert any("more errors" in e.message for e in errors)


@pytest.mark.parametrize(
    "grow", [lambda i: f"  k{i}: v\n", lambda i: f"  - v{i}\n"], ids=["keys", "items"]
)
def test_a_document_with_too_many_nodes_is_an_error(
    specs: Path, grow: Callable[[int], str]
) -> None:
    from agent.specs.yamlread import MAX_NODES

    path = specs / "pipelines/select.yaml"
    path.write_text(path.read_text() + "extra:\n" + "".join(grow(i) for i in range(MAX_NODES)))
    _one(_errors(specs), "nodes")


def test_the_pipeline_specs_together_have_a_byte_budget(
    specs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent.specs

    sizes = {p.name: len(p.read_text()) for p in sorted((specs / "pipelines").glob("*.yaml"))}
    first_two = sum(list(sizes.values())[:2])
    monkeypatch.setattr(agent.specs, "MAX_SPECS_BYTES", first_two + 10)
    errors = _errors(specs)
    third = sorted(sizes)[2]
    over = _one(errors, "add up to more than")
    assert over.file == f"specs/pipelines/{third}"
    assert not [e for e in errors if e.file == f"specs/pipelines/{sorted(sizes)[3]}"]
