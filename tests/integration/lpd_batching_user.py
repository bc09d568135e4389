"""User code of a batching pipeline, for tests/integration/test_lpd_batching.py.

Run by localpachd as `python3 lpd_batching_user.py /pfs/out [decorator]`: once per worker slot,
asking for datum after datum. `decorator` uses python-pachyderm's `batch_all_datums` (the datum's
variables come from /pfs/.env: a real /pfs only); otherwise a `next_datum` loop reads them from
NextDatumResponse.env (both /pfs modes). Each datum's input `in` is one file, copied upper-cased
to /pfs/out/<its name>. Behaviour is steered by transform.env:

  STARTS    a file outside /pfs: each process start appends its pid
  FAIL_ON   a datum whose file name contains it raises (reported as its error)
  EXIT_ON   the process exits (status 3) when handed its datum number EXIT_ON
  HANG_ON   a datum whose file name contains it hangs, the first time only (marker in STARTS' dir)
  PEERS     before its first datum, the process waits until PEERS slots wrote their port into
            STARTS' dir, calls every other slot's NextDatum, writes the status it got there and
            waits until every slot has
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping

OUT = sys.argv[1]
handed = 0


def process(env: Mapping[str, str]) -> None:
    global handed
    handed += 1
    if os.environ.get("EXIT_ON") and handed == int(os.environ["EXIT_ON"]):
        print(f"exiting on datum {handed}", flush=True)
        os._exit(3)
    path = env["in"]
    name = os.path.basename(path)
    print(f"processing {name} in {os.getpid()}")
    if os.environ.get("FAIL_ON") and os.environ["FAIL_ON"] in name:
        raise ValueError(f"cannot process {name}")
    hang = os.environ.get("HANG_ON")
    if hang and hang in name:
        marker = os.path.join(os.path.dirname(os.environ["STARTS"]), "hung")
        if not os.path.exists(marker):
            open(marker, "w").close()
            time.sleep(3600)
    with open(path) as f:
        text = f.read()
    with open(os.path.join(OUT, name), "w") as f:
        f.write(text.upper() + env["PACH_DATUM_ID"][:8])


def raw_loop() -> None:
    from python_pachyderm import Client

    worker = Client().worker
    error = ""
    while True:
        env = dict(item.split("=", 1) for item in worker.next_datum(error=error).env)
        error = ""
        try:
            process(env)
        except Exception as exc:
            error = repr(exc)
            print(f"{error}: reporting it")


def decorated() -> None:
    from python_pachyderm import batch_all_datums

    def each() -> None:
        process(os.environ)

    batch_all_datums(each)()  # as `@batch_all_datums` over `each`


def probe_peers(peers: int) -> None:
    """Call the other slots' worker APIs with this process's own environment: each must refuse."""
    import grpc
    from python_pachyderm.proto.v2.worker import worker_pb2, worker_pb2_grpc

    folder, mine = os.path.dirname(os.environ["STARTS"]), os.environ["PPS_WORKER_GRPC_PORT"]
    with open(os.path.join(folder, f"port.{mine}"), "w"):
        pass
    deadline = time.monotonic() + 120
    while len(ports := [n[5:] for n in os.listdir(folder) if n.startswith("port.")]) < peers:
        assert time.monotonic() < deadline, "the other slots never started"
        time.sleep(0.05)
    for port in (p for p in ports if p != mine):
        stub = worker_pb2_grpc.WorkerStub(grpc.insecure_channel(f"localhost:{port}"))
        try:
            stub.NextDatum(worker_pb2.NextDatumRequest(), timeout=60)
            got = "OK"
        except grpc.RpcError as exc:
            got = exc.code().name
        with open(os.path.join(folder, f"probe.{mine}.{port}"), "w") as f:
            f.write(got)
    # no slot asks for a datum (and may end) before every probe is done: all endpoints stay up
    while sum(n.startswith("probe.") for n in os.listdir(folder)) < peers * (peers - 1):
        assert time.monotonic() < deadline, "the other slots never probed"
        time.sleep(0.05)


if __name__ == "__main__":
    with open(os.environ["STARTS"], "a") as f:
        f.write(f"{os.getpid()}\n")
    print("user code starting")
    if os.environ.get("PEERS"):
        probe_peers(int(os.environ["PEERS"]))
    decorated() if sys.argv[2:] == ["decorator"] else raw_loop()
