"""Prometheus metrics of the agent, in its own CollectorRegistry (never the global one).

`agent.runner.loop` calls `observe_result` after every run; `agent.runner.server` serves
`render()` on GET /metrics. Names follow argocd_* / gotk_* style with the `pachsync_` prefix so
the same dashboards and alerts work: syncs by result, duration histogram, last success time,
pipelines out of sync, drift, git fetch failures, backoff, stall, webhook calls, notifications
sent and failed (`agent.notify`), build info.
An own registry keeps tests independent and avoids duplicate-registration errors.

Per pipeline, `pachsync_pipeline_sync{pipeline,status}` and `pachsync_pipeline_health{pipeline,
health}` are 0/1 gauges for every value of the vocabulary (so an alert can match
`pachsync_pipeline_health{health="Degraded"} == 1`), read at scrape time from the runner's last
`agent.plan.health.StatusReport`, the same value /status shows: one snapshot, never half-updated.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from agent.plan.health import Health, StatusReport, Sync
from agent.runner.status import ResultLike

RESULTS = ("applied", "unchanged", "partial", "invalid", "failed")
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class PipelineStatusCollector(Collector):
    """The two per-pipeline gauge families, from the last StatusReport (replaced, never
    mutated: a scrape sees one report whole)."""

    def __init__(self) -> None:
        self.report: StatusReport | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sync = GaugeMetricFamily(
            "pachsync_pipeline_sync", "1 for the pipeline's sync status (vs git), 0 for the "
            "others.", labels=["pipeline", "status"])
        health = GaugeMetricFamily(
            "pachsync_pipeline_health", "1 for the pipeline's health (state and newest job), "
            "0 for the others.", labels=["pipeline", "health"])
        report = self.report
        for ps in report.pipelines if report is not None else ():
            for s in Sync:
                sync.add_metric([ps.name, str(s)], 1.0 if ps.sync == s else 0.0)
            for h in Health:
                health.add_metric([ps.name, str(h)], 1.0 if ps.health == h else 0.0)
        yield sync
        yield health


class AgentMetrics:
    """All metrics of one agent process."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, source: str, branch: str, version: str = "0.1.0") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sync_total = Counter("pachsync_sync", "Sync runs by result.", ["result"], registry=r)
        for result in RESULTS:  # export zeros so rate() and alerts work from the first scrape
            self.sync_total.labels(result=result)
        self.sync_duration = Histogram(
            "pachsync_sync_duration_seconds", "Duration of a sync run (fetch to record).",
            buckets=DURATION_BUCKETS, registry=r)
        self.last_success = Gauge(
            "pachsync_last_success_timestamp_seconds",
            "Unix time of the last run that left the cluster equal to git.", registry=r)
        self.last_attempt = Gauge(
            "pachsync_last_attempt_timestamp_seconds", "Unix time of the last run.", registry=r)
        self.out_of_sync = Gauge(
            "pachsync_pipelines_out_of_sync",
            "Managed pipelines not equal to git after the last run.", registry=r)
        self.drift = Counter(
            "pachsync_drift_detected", "Pipelines found changed outside git.", registry=r)
        self.fetch_failures = Counter(
            "pachsync_git_fetch_failures", "Runs whose git fetch failed.", registry=r)
        self.errors = Counter(
            "pachsync_sync_errors", "Failed or invalid runs by error kind.", ["kind"], registry=r)
        self.conflicts = Gauge(
            "pachsync_conflicts", "Pipelines the last run skipped because another source (or a "
            "plain repo) owns the name, or an input of theirs was skipped.", registry=r)
        self.consecutive_failures = Gauge(
            "pachsync_consecutive_failures", "Failed runs in a row (drives backoff).", registry=r)
        self.backoff = Gauge(
            "pachsync_backoff_seconds", "Current retry delay after failures (0 = none).",
            registry=r)
        self.stalled = Gauge(
            "pachsync_stalled", "1 while the head commit is known invalid or badly signed.",
            registry=r)
        self.webhooks = Counter(
            "pachsync_webhook_requests", "Webhook calls by endpoint and outcome.",
            ["endpoint", "outcome"], registry=r)
        self.http_refused = Counter(
            "pachsync_http_refused", "HTTP requests the agent refused before handling them "
            "(408 slow, 411/413/431 too big or unbounded, 400 truncated, 503 busy).",
            ["status"], registry=r)
        self.notifications_failed = Counter(
            "pachsync_notifications_failed", "Commit statuses and events given up (after "
            "retries, refused, or dropped from a full queue) by target.", ["target"], registry=r)
        self.notifications_sent = Counter(
            "pachsync_notifications_sent", "Commit statuses and events delivered by target.",
            ["target"], registry=r)
        self.info = Info("pachsync", "Agent build and source.", registry=r)
        self.pipeline_status = PipelineStatusCollector()
        r.register(self.pipeline_status)
        self.info.info({"version": version, "source": source, "branch": branch})

    def observe_result(self, result: ResultLike, failures: int, backoff_s: float,
                       stalled: bool, now: float) -> None:
        """Record one finished run."""
        self.sync_total.labels(result=result.result).inc()
        self.sync_duration.observe(max(result.duration_s, 0.0))
        self.last_attempt.set(now)
        if result.result in ("applied", "unchanged"):
            self.last_success.set(now)
        if result.result in ("applied", "unchanged", "partial"):
            self.out_of_sync.set(result.out_of_sync)
            self.conflicts.set(result.conflicts)
        if result.drift_detected:
            self.drift.inc(result.drift_detected)
        if result.result == "failed" and result.commit is None:
            self.fetch_failures.inc()
        if result.error_kind:
            self.errors.labels(kind=result.error_kind).inc()
        self.observe_state(failures, backoff_s, stalled)

    def observe_state(self, failures: int, backoff_s: float, stalled: bool) -> None:
        self.consecutive_failures.set(failures)
        self.backoff.set(backoff_s)
        self.stalled.set(1 if stalled else 0)

    def observe_health(self, report: StatusReport) -> None:
        """Per-pipeline sync and health gauges now show `report`."""
        self.pipeline_status.report = report

    def render(self) -> bytes:
        return generate_latest(self.registry)
