"""Structured logs: one JSON object per line with the run's fields; secrets always redacted."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import warnings

import pytest

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


def test_capture_all_formats_what_would_otherwise_reach_stderr_raw(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Uncaught exceptions in any thread, other libraries' warnings and warnings.warn: each a
    formatted, redacted line (the agent process runs with capture_all)."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # restored after the test
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    out = io.StringIO()
    logs.configure("json", secrets=["tok-123"], stream=out, capture_all=True)
    try:
        def boom() -> None:
            raise RuntimeError("handler died holding tok-123")

        thread = threading.Thread(target=boom, name="worker-7")
        thread.start()
        thread.join()
        sys.excepthook(ValueError, ValueError("main died"), None)
        logging.getLogger("some.library").warning("library warning")
        logging.getLogger("some.library").info("library chatter")  # below WARNING: dropped
        with warnings.catch_warnings():
            warnings.simplefilter("always")  # pytest may have shown it already
            warnings.warn("deprecated thing", UserWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    msgs = [d["msg"] for d in docs]
    assert msgs[:3] == ["uncaught exception in thread worker-7", "uncaught exception",
                        "library warning"]
    assert "deprecated thing" in msgs[3] and len(docs) == 4
    assert "RuntimeError: handler died holding ***" in docs[0]["exception"]
    assert "tok-123" not in out.getvalue()
