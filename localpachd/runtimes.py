"""The runtime factory: a worker runtime by name (`serve --runtime`, `ServerConfig.runtime`).

Called by `localpachd.jobs.JobEngine` and tests. The interface the runtimes implement is
`localpachd.runtime.Runtime`; a new runtime is a class implementing it plus one entry in
`RUNTIMES` here.
"""

from __future__ import annotations

from collections.abc import Callable

from localpachd.runtime import Runtime
from localpachd.runtime_subprocess import SubprocessRuntime
from localpachd.runtime_warm import WarmRuntime

RUNTIMES: dict[str, Callable[[], Runtime]] = {
    "subprocess": SubprocessRuntime,
    "warm": WarmRuntime,
    "auto": WarmRuntime,  # python datums forked warm, every other command as a subprocess
}
RUNTIME_NAMES = tuple(RUNTIMES)


def make_runtime(name: str = "auto") -> Runtime:
    """The runtime called `name` (one of RUNTIME_NAMES); ValueError names the choices."""
    factory = RUNTIMES.get(name)
    if factory is None:
        choices = ", ".join(RUNTIME_NAMES)
        raise ValueError(f"unknown worker runtime {name!r}: choose one of {choices}")
    return factory()
