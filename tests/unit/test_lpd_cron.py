"""localpachd.cron (pure): cron specs as Pachyderm 2.7 parses them, tick names, and the
catch-up rule (one tick however many were missed); pps_spec's validation and defaults of cron
inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from python_pachyderm.proto.v2.pps import pps_pb2

from localpachd import cron, pps_spec

T0 = datetime(2026, 12, 6, 2, 30, 0, tzinfo=UTC)


@pytest.mark.parametrize(("spec", "after", "expected"), [
    ("@every 1s", T0, T0 + timedelta(seconds=1)),
    ("@every 1h30m", T0, T0 + timedelta(minutes=90)),
    ("@every 1.5s", T0, T0 + timedelta(seconds=1)),  # whole seconds, as Pachyderm
    ("@every 10ms", T0, T0 + timedelta(seconds=1)),  # at least one second
    ("*/5 * * * *", T0, T0 + timedelta(minutes=5)),
    ("@hourly", T0, datetime(2026, 12, 6, 3, 0, tzinfo=UTC)),
    ("@daily", T0, datetime(2026, 12, 7, tzinfo=UTC)),
    ("0 0 1 1 *", T0, datetime(2027, 1, 1, tzinfo=UTC)),
])  # fmt: skip
def test_specs_parse_as_pachyderm_reads_them(spec: str, after: datetime, expected: datetime
                                             ) -> None:  # fmt: skip
    assert cron.parse(spec).next_after(after) == expected


@pytest.mark.parametrize("spec", ["", "@every", "@every 1x", "@every s", "@sometimes",
                                  "* * *", "61 * * * *", "bad"])
def test_bad_specs_are_refused(spec: str) -> None:
    with pytest.raises(cron.CronSpecError):
        cron.parse(spec)


def test_tick_names_are_rfc3339_utc_and_parse_back() -> None:
    assert cron.tick_name(T0.replace(microsecond=123)) == "2026-12-06T02:30:00Z"
    assert cron.parse_tick("/2026-12-06T02:30:00Z") == T0
    assert cron.parse_tick("/not-a-time") is None


def test_nothing_is_due_before_the_next_tick() -> None:
    tick, nxt = cron.due(cron.parse("@every 10s"), T0, T0 + timedelta(seconds=9))
    assert tick is None and nxt == T0 + timedelta(seconds=10)


def test_one_missed_tick_keeps_its_scheduled_name() -> None:
    tick, nxt = cron.due(cron.parse("@every 10s"), T0, T0 + timedelta(seconds=12))
    assert tick == T0 + timedelta(seconds=10) and nxt == T0 + timedelta(seconds=20)


@pytest.mark.fuzz
@given(missed=st.integers(min_value=2, max_value=100_000), spec=st.sampled_from(
    ["@every 1s", "@every 7s", "*/1 * * * *", "@hourly"]))
def test_many_missed_ticks_make_one_tick_now(missed: int, spec: str) -> None:
    schedule = cron.parse(spec)
    step = schedule.next_after(T0) - T0
    now = T0 + step * missed + timedelta(milliseconds=300)
    tick, nxt = cron.due(schedule, T0, now)
    assert tick == now.replace(microsecond=0)
    assert nxt > now  # the next one is in the future: no flood


def _req(inp: pps_pb2.Input) -> pps_pb2.CreatePipelineRequest:
    req = pps_pb2.CreatePipelineRequest(transform=pps_pb2.Transform(cmd=["true"]), input=inp)
    req.pipeline.name = "tock"
    return req


def test_cron_input_is_validated_and_defaulted_as_pachyderm() -> None:
    req = _req(pps_pb2.Input(cron=pps_pb2.CronInput(name="tick", spec="@every 1s")))
    pps_spec.validate(req)
    out = pps_spec.with_defaults(req)
    assert out.input.cron.repo == "tock_tick"
    assert out.input.cron.project == "default"
    assert out.input.cron.start.seconds > 0  # start = now when not given


@pytest.mark.parametrize(("inp", "message"), [
    (pps_pb2.Input(cron=pps_pb2.CronInput(name="tick", spec="nope")), "error parsing cron-spec"),
    (pps_pb2.Input(cron=pps_pb2.CronInput(spec="@every 1s")), "input must specify a name"),
    (pps_pb2.Input(cron=pps_pb2.CronInput(name="out", spec="@every 1s")), "cannot be named out"),
    (pps_pb2.Input(cross=[
        pps_pb2.Input(cron=pps_pb2.CronInput(name="a", spec="@every 1s")),
        pps_pb2.Input(pfs=pps_pb2.PFSInput(repo="a", glob="/*"))]), "more than once"),
])  # fmt: skip
def test_bad_cron_inputs_are_refused(inp: pps_pb2.Input, message: str) -> None:
    with pytest.raises(pps_spec.SpecInvalid, match=message):
        pps_spec.validate(_req(inp))
