"""`pachsync demo` prints stages.select's rule in words (the bug: it printed the Python dict
`{'kind': 'tolerance', 'tolerance': 0.0}`), for both rules the stage writes and for anything else
as JSON, never as a Python repr."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.commands.demo import describe_rule
from stages.select import Entry, choose


@pytest.mark.parametrize("tolerance, threshold, tie_break, words", [
    (0.0, None, "cv", "rule: accuracy within 0.0 of the best; ties broken by cross-validated "
                      "accuracy"),
    (0.0, None, "none", "rule: accuracy within 0.0 of the best"),
    (0.02, None, "none", "rule: accuracy within 0.02 of the best"),
    (None, 0.1, "cv", "rule: error (1 - accuracy) at most 0.1"),
])
def test_the_rules_select_writes_read_as_words(tolerance: float | None, threshold: float | None,
                                               tie_break: str, words: str) -> None:
    rule, _ = choose([Entry("model_C1.0_G1.0", 1.0, Path("m.pkl"))], tolerance, threshold,
                     tie_break)
    assert describe_rule(rule) == words
    assert "{" not in describe_rule(rule) and "'" not in describe_rule(rule)


@pytest.mark.parametrize("rule", [{"kind": "new", "x": 1}, "top-5", None, [1, 2]])
def test_other_rules_are_json_not_a_python_repr(rule: Any) -> None:
    text = describe_rule(rule)
    assert "'" not in text and "None" not in text
