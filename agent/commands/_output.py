"""The one way a command deliberately writes an Azure Pipelines logging command.

Used by `validate --format azure`. `agent.cli` guards stdout so that any other `##vso[` is
neutralised; a line built here (values escaped by `agent.util.safetext.logging_command`) goes
out through the guard's `write_trusted`, untouched. Outside the CLI (a test calling a command's
`run` directly) it is simply printed.
"""

from __future__ import annotations

import sys

from agent.util.safetext import logging_command


def emit_logging_command(command: str, properties: dict[str, object], message: str) -> None:
    """Write `##vso[command properties]message` (every value escaped) as one line of stdout."""
    line = logging_command(command, properties, message)
    trusted = getattr(sys.stdout, "write_trusted", None)
    if trusted is not None:
        trusted(line)
    else:
        print(line)
