"""Logging set-up of the agent: text or one-JSON-object-per-line, with secrets redacted.

`agent.commands.agent` calls `configure` once; `agent.runner.loop` logs one line per run with
`extra={"fields": {...}}` (commit, result, counts, duration), which the JSON formatter merges
into the object and the text formatter appends as key=value pairs. Every formatted line passes
through the redactor, which replaces each known secret value with `***`: a token that leaks
into an exception text from a lower layer still never reaches the log.

With `capture_all` (the agent process), nothing else may write to stderr behind the formatter's
back either: other libraries' warnings and errors (root logger), `warnings.warn`, and uncaught
exceptions in any thread (`threading.excepthook`, `sys.excepthook`) become formatted, redacted
log lines, tracebacks inside them.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterable
from types import TracebackType
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
              stream: IO[str] | None = None, capture_all: bool = False) -> logging.Logger:
    """Route the `pachsync` logger (and APScheduler's errors) to `stream` in `fmt`; with
    `capture_all`, also every other logger's warnings, Python warnings and uncaught exceptions."""
    formatter: logging.Formatter = (JsonFormatter(secrets) if fmt == "json"
                                    else TextFormatter(secrets))
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    handler._pachsync = True  # type: ignore[attr-defined]
    # APScheduler warns on every webhook burst it coalesces ("maximum number of running
    # instances reached"): that is the design, not a problem, so only its errors are shown.
    targets = [(LOGGER_NAME, level), ("apscheduler", logging.ERROR)]
    if capture_all:
        targets.append(("", logging.WARNING))  # the root logger: every other library
    for name, lvl in targets:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if getattr(old, "_pachsync", False):
                logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(lvl)
        logger.propagate = not name  # root has nothing above it; the others stop here
    if capture_all:
        _capture_uncaught(logging.getLogger(LOGGER_NAME))
    return logging.getLogger(LOGGER_NAME)


def _capture_uncaught(log: logging.Logger) -> None:
    """Warnings and uncaught exceptions (any thread) as formatted log lines, not raw stderr."""
    logging.captureWarnings(False)  # re-arm: someone may have replaced showwarning since
    logging.captureWarnings(True)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        log.error(f"uncaught exception in thread {name}",
                  exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
                  extra={"fields": {"event": "crash", "thread": name}})

    def main_hook(exc_type: type[BaseException], exc: BaseException,
                  tb: TracebackType | None) -> None:
        log.critical("uncaught exception", exc_info=(exc_type, exc, tb),
                     extra={"fields": {"event": "crash"}})

    threading.excepthook = thread_hook
    sys.excepthook = main_hook
