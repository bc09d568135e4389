"""Logging set-up of the agent: text or one-JSON-object-per-line, with secrets redacted.

`agent.commands.agent` calls `configure` once; `agent.runner.loop` logs one line per run with
`extra={"fields": {...}}` (commit, result, counts, duration), which the JSON formatter merges
into the object and the text formatter appends as key=value pairs. Every formatted line passes
through the redactor, which replaces each known secret value with `***`: a token that leaks
into an exception text from a lower layer still never reaches the log.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import IO, Any

LOGGER_NAME = "pachsync"
_REDACTED = "***"


class _Redacting(logging.Formatter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first so a secret containing another is replaced whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, _REDACTED)
        return text


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


class JsonFormatter(_Redacting):
    """One JSON object per line: ts, level, logger, msg, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_fields(record))
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return self.redact(json.dumps(doc, default=str, sort_keys=False))


class TextFormatter(_Redacting):
    """`2026-01-01T00:00:00Z INFO msg key=value …` for humans."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        pairs = " ".join(f"{k}={_text_value(v)}" for k, v in _fields(record).items())
        line = f"{ts} {record.levelname} {record.getMessage()}" + (f" {pairs}" if pairs else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return self.redact(line)


def _text_value(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return json.dumps(list(value), default=str)
    text = str(value)
    return json.dumps(text) if " " in text else text


def configure(fmt: str = "text", secrets: Iterable[str] = (), level: int = logging.INFO,
              stream: IO[str] | None = None) -> logging.Logger:
    """Route the `pachsync` logger (and APScheduler's errors) to `stream` in `fmt`."""
    formatter: logging.Formatter = (JsonFormatter(secrets) if fmt == "json"
                                    else TextFormatter(secrets))
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    # APScheduler warns on every webhook burst it coalesces ("maximum number of running
    # instances reached"): that is the design, not a problem, so only its errors are shown.
    for name, lvl in ((LOGGER_NAME, level), ("apscheduler", logging.ERROR)):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if getattr(old, "_pachsync", False):
                logger.removeHandler(old)
        handler._pachsync = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(lvl)
        logger.propagate = False
    return logging.getLogger(LOGGER_NAME)
