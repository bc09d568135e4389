"""PURE cron schedules: parsing a cron input's spec, tick names, which tick is due.

Called by `pps_spec` (validation of `input.cron.spec`) and `localpachd.cronticker` (the thread
that writes tick commits, and RunCron's tick). As Pachyderm 2.7
(`src/server/pps/server/master.go` cronTick / makeCronCommits):
- a spec is a standard 5-field crontab, a descriptor (`@hourly`, `@daily`…) or `@every <Go
  duration>` (whole seconds, at least 1 s); times are UTC;
- a tick is ONE commit on the cron repo's `master`: with `overwrite` every file is deleted, then
  an empty file named by the tick time in RFC 3339 (`2026-12-06T02:30:00Z`) is put;
- the last tick is the newest file name in the repo, or the input's `start` if later (or if the
  repo is empty); the next tick is the schedule's next time after it.
Deliberate difference: after a stop or a server restart Pachyderm makes every missed tick at
once; localpachd makes ONE tick (named by the current time) and then follows the schedule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.triggers.cron import CronTrigger

_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}  # fmt: skip
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
             "h": 3600.0}  # fmt: skip
_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


class CronSpecError(ValueError):
    """A cron spec Pachyderm's parser would refuse."""


@dataclass(frozen=True)
class Every:
    """`@every D`: ticks D apart (Pachyderm: D rounded down to whole seconds, at least 1 s)."""

    seconds: int

    def next_after(self, t: datetime) -> datetime:
        return t.replace(microsecond=0) + timedelta(seconds=self.seconds)


@dataclass(frozen=True)
class Crontab:
    """A 5-field crontab (UTC)."""

    trigger: Any

    def next_after(self, t: datetime) -> datetime:
        after = t.replace(microsecond=0) + timedelta(seconds=1)
        nxt = self.trigger.get_next_fire_time(None, after)
        return nxt if nxt is not None else datetime.max.replace(tzinfo=UTC)


Schedule = Every | Crontab


def go_duration(text: str) -> float:
    """Seconds of a Go duration string (`1h30m`, `10s`, `1.5m`); CronSpecError if invalid."""
    if not text or _GO_DURATION.sub("", text) != "":
        raise CronSpecError(f"time: invalid duration {text!r}")
    return sum(float(n) * _GO_UNITS[u] for n, u in _GO_DURATION.findall(text))


def parse(spec: str) -> Schedule:
    """A cron spec as Pachyderm's ParseStandard reads it (UTC); CronSpecError if invalid."""
    text = spec.strip()
    if not text:
        raise CronSpecError("empty spec string")
    if text.startswith("@every"):
        secs = int(go_duration(text[len("@every") :].strip()))
        return Every(max(1, secs))
    text = _DESCRIPTORS.get(text, text)
    if text.startswith("@"):
        raise CronSpecError(f"unrecognized descriptor: {text}")
    try:
        return Crontab(CronTrigger.from_crontab(text, timezone=UTC))
    except ValueError as exc:
        raise CronSpecError(str(exc)) from exc


def tick_name(t: datetime) -> str:
    """A tick file's name: RFC 3339 in UTC, whole seconds, as Go's time.RFC3339 writes it."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_tick(name: str) -> datetime | None:
    try:
        t = datetime.fromisoformat(name.strip("/").rsplit("/", 1)[-1])
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def due(schedule: Schedule, last: datetime, now: datetime) -> tuple[datetime | None, datetime]:
    """(the tick to make now or None, when to look again). One tick however many were missed:
    the scheduled time when exactly one is due, else `now` (see the module docstring)."""
    nxt = schedule.next_after(last)
    if nxt > now:
        return None, nxt
    after = schedule.next_after(nxt)
    tick = nxt if after > now else now.replace(microsecond=0)
    return tick, schedule.next_after(tick)
