"""The in-cluster sync loop (`pachsync agent`): scheduler, webhooks, HTTP endpoints, backoff.

Layer `runner` of DESIGN.md: sits above `agent.sync` (contract C4) and below the CLI.
Modules: `loop` (Runner: schedule, lock, stall, backoff), `server` (HTTP endpoints),
`webhook` / `backoff` / `status` (pure rules), `metrics` (Prometheus), `logs` (structured,
redacted logging), `credentials` (secrets from env or files only).
"""

from __future__ import annotations

from agent.runner.backoff import BackoffPolicy
from agent.runner.loop import Runner, RunnerConfig
from agent.runner.server import AgentServer, WebhookAuth

__all__ = ["AgentServer", "BackoffPolicy", "Runner", "RunnerConfig", "WebhookAuth"]
