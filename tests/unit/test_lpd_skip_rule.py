"""The skip rule (`localpachd.datums.plan_job`): which datums of a job may keep the outputs of
the last successful job. Pure: datums, salt and the done datums' hashes in, a plan out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from localpachd.datums import Datum, DatumInput, plan_job


def _datum(path: str, content: str) -> Datum:
    return Datum((DatumInput("in", "default", "repo", "master", "c1", path, content),))


DATUMS = [_datum("/a", "h1"), _datum("/b", "h2"), _datum("/c", "h3")]


def _done(datums: list[Datum], salt: str = "") -> dict[str, str]:
    return {d.id: d.hash(salt) for d in datums}


def test_unchanged_datums_are_skipped_in_order() -> None:
    plan = plan_job(DATUMS, "", _done(DATUMS))
    assert plan.skipped == DATUMS and plan.todo == []
    assert plan.hashes == _done(DATUMS)


def test_changed_content_new_datums_and_no_history_run() -> None:
    changed = [DATUMS[0], _datum("/b", "h2-new"), _datum("/d", "h4")]
    plan = plan_job(changed, "", _done(DATUMS))
    assert plan.skipped == [DATUMS[0]] and plan.todo == changed[1:]
    assert plan_job(DATUMS, "", {}).todo == DATUMS


def test_a_new_salt_or_every_job_runs_everything() -> None:
    assert plan_job(DATUMS, "salt-2", _done(DATUMS)).todo == DATUMS
    plan = plan_job(DATUMS, "", _done(DATUMS), every_job=True)
    assert plan.skipped == [] and plan.todo == DATUMS


@pytest.mark.fuzz
@given(
    st.dictionaries(st.sampled_from("abcdef"), st.sampled_from("xyz"), max_size=6),
    st.dictionaries(st.sampled_from("abcdef"), st.sampled_from("xyz"), max_size=6),
    st.booleans(),
)
def test_skipped_and_todo_partition_the_datums(
    now: dict[str, str], before: dict[str, str], every_job: bool
) -> None:  # (paths are unique within a job: one commit, one content per path)
    datums = [_datum("/" + p, h) for p, h in now.items()]
    done = _done([_datum("/" + p, h) for p, h in before.items()])
    plan = plan_job(datums, "", done, every_job)
    assert sorted(map(id, plan.skipped + plan.todo)) == sorted(map(id, datums))
    for d in plan.skipped:
        assert not every_job and done[d.id] == d.hash("")
    for d in plan.todo:
        assert every_job or done.get(d.id) != d.hash("")
