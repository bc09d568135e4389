"""Structured logs: one JSON object per line with the run's fields; secrets always redacted."""

from __future__ import annotations

import io
import json
import logging

from agent.runner import logs


def test_json_line_has_fields_and_redacts_secrets() -> None:
    out = io.StringIO()
    log = logs.configure("json", secrets=["tok-123", ""], stream=out)
    log.info("sync applied", extra={"fields": {"commit": "abc", "counts": {"create": 2},
                                               "duration_s": 0.5}})
    log.error("fetch failed: https://x:tok-123@host/repo.git")
    first, second = [json.loads(line) for line in out.getvalue().splitlines()]
    assert first["msg"] == "sync applied" and first["commit"] == "abc"
    assert first["counts"] == {"create": 2} and first["level"] == "info"
    assert "tok-123" not in out.getvalue() and "***" in second["msg"]


def test_text_format_appends_key_values() -> None:
    out = io.StringIO()
    log = logs.configure("text", secrets=["hunter2"], stream=out)
    log.warning("sync invalid", extra={"fields": {"commit": "abc", "counts": {"update": 1}}})
    log.info("password hunter2")
    text = out.getvalue()
    assert "WARNING sync invalid commit=abc counts=update:1" in text
    assert "hunter2" not in text


def test_configure_twice_does_not_duplicate_lines() -> None:
    out = io.StringIO()
    logs.configure("text", stream=io.StringIO())
    logs.configure("text", stream=out)
    logging.getLogger("pachsync.test").info("once")
    assert out.getvalue().count("once") == 1
