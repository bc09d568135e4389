"""Pachyderm's datum batching for the stages: one process works through many datums.

Called by `stages.train` and `stages.evaluate` (the 77-datum pipelines `model` and `test`, whose
specs set `transform.datum_batching: true`). Pachyderm (>= 2.6, and localpachd) starts such a
pipeline's user code once per worker and serves the worker API on loopback; the user code asks
it for each next datum (`pachyderm.worker.Worker/NextDatum`), the worker lays that datum out at
the same /pfs paths as the one before, and the next request carries the previous datum's error
("" = it succeeded). After the last datum the worker stops the process.

How a stage knows: the worker puts the API's port in `PPS_WORKER_GRPC_PORT` (python-pachyderm's
`Client().worker` dials `localhost:<port>`). Without that variable a stage runs one datum from
its command line as it always did (unit tests, a laptop, a cluster without batching), so the
same spec also works with `datum_batching` off. python-pachyderm (and grpc) are imported only
in batching mode, by the stage module itself (a warm worker's zygote reads the stage's imports
and preloads them), so `--help` and the one-datum path stay fast and free of grpc.

The loop is python-pachyderm's own `worker.batch_datum()`: it reports the repr of any exception
the datum raised as that datum's error, and loads /pfs/.env (the datum's variables, where the
worker writes them). A `StageError` is also printed as the usual one line on stderr; it fails
that datum only, and the process goes on with the next. The command line is parsed once (it is
the same for every datum); everything else, the inputs included, is read again per datum.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from stages.common import EXIT_FAILED, StageError

WORKER_PORT_ENV = "PPS_WORKER_GRPC_PORT"

Args = TypeVar("Args")


def under_batching_worker(environ: Mapping[str, str] = os.environ) -> bool:
    """True when a batching worker started this process (it set `PPS_WORKER_GRPC_PORT`)."""
    return bool(environ.get(WORKER_PORT_ENV, "").strip())


def worker_of(client_class: Any) -> Any:
    """python-pachyderm's worker stub (`Client(...).worker`), dialling localhost:<port>.

    `use_default_host=False`: the stage talks only to its worker, never to pachd, so no
    Pachyderm config file is read (a PACH_CONFIG naming a missing file would fail otherwise);
    the client's own pachd channel is never used, and grpc channels connect lazily.
    """
    return client_class(use_default_host=False).worker


def serve(
    stage: str,
    worker: Any,
    parse: Callable[[Sequence[str] | None], Args],
    datum: Callable[[Args], None],
    argv: Sequence[str] | None,
) -> int:
    """Runs `datum` once per datum the worker hands out, until the worker ends the batch.

    `worker` is python-pachyderm's worker stub (`worker_of(Client)`). Returns 0 when the worker
    closes the batch (CANCELLED), 1 with one stderr line when it cannot be reached; normally the
    worker stops the process after the last datum and this never returns.
    """
    import grpc  # python-pachyderm's own dependency, already loaded with it

    args = parse(argv)  # a bad command line exits (2) before any datum is asked for
    try:
        while True:
            _flush()  # the datum's log lines reach the worker before it moves on
            with worker.batch_datum():
                _one(stage, datum, args)
    except grpc.RpcError as exc:
        code = exc.code() if hasattr(exc, "code") else None
        if code == grpc.StatusCode.CANCELLED:
            return 0
        details = exc.details() if hasattr(exc, "details") else str(exc)
        port = os.environ.get(WORKER_PORT_ENV, "")
        print(
            f"{stage}: error: the worker API at localhost:{port} ({WORKER_PORT_ENV}) failed: "
            f"{code}: {details}; this process only runs under a batching worker",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_FAILED


def _one(stage: str, datum: Callable[[Args], None], args: Args) -> None:
    try:
        datum(args)
    except StageError as exc:
        print(f"{stage}: error: {exc.where}: {exc.problem}", file=sys.stderr, flush=True)
        raise  # batch_datum reports it to the worker as this datum's error


def _flush() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
