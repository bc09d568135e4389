"""Feedback from the agent where people look: Azure DevOps commit statuses and signed events.

Layer `notify` (below `runner`, above `plan`): `azure` (repository from the git URL, the
"Statuses - Create" request), `events` (PURE: which status each run and health check means for
a commit, posted once per state change), `sink` (the generic HMAC-signed JSON sink),
`dispatch` (a bounded background queue per target with retry and backoff, so a hanging or
failing endpoint never delays a sync) and `notifier` (what the runner calls).
"""
