"""Pure backoff schedule of the sync loop: how long to wait after N consecutive failed runs.

Called by `agent.runner.loop` after every run. Failures that may pass by themselves (cluster
down, git unreachable) are retried sooner than the interval at first, then less and less often,
never later than the cap, so a long outage neither hammers the cluster nor leaves the agent
asleep for hours once it is back. Every retry fetches the newest commit: the schedule decides
*when*, never *what*. The loop spreads each wait with `with_jitter` (up to `jitter` of it
earlier, never later), so agents that failed together (one pachd outage) do not retry in
lockstep; `delay` itself stays the plain schedule that /status shows.
"""

from __future__ import annotations

from dataclasses import dataclass

# 2.0 ** 64 seconds is far beyond any sane cap; bounding the exponent keeps the float finite.
_MAX_EXPONENT = 64


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff: initial_s, initial_s*factor, … capped at max_s."""

    initial_s: float = 5.0
    factor: float = 2.0
    max_s: float = 300.0
    jitter: float = 0.1  # each wait is up to this fraction shorter, at random

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.max_s < self.initial_s or self.factor < 1 \
                or not 0 <= self.jitter < 1:
            raise ValueError(
                f"invalid backoff policy: initial={self.initial_s}s factor={self.factor} "
                f"max={self.max_s}s jitter={self.jitter} (need 0 < initial <= max, "
                "factor >= 1 and 0 <= jitter < 1)"
            )

    def delay(self, failures: int) -> float:
        """Seconds to wait before the next run after `failures` consecutive failed runs."""
        if failures <= 0:
            return 0.0
        exponent = min(failures - 1, _MAX_EXPONENT)
        return float(min(self.max_s, self.initial_s * self.factor**exponent))

    def with_jitter(self, delay: float, draw: float) -> float:
        """`delay` shortened by up to `jitter` of it; `draw` in [0, 1) is the caller's random
        number (so this stays pure): 0 keeps the delay, values near 1 shorten it the most."""
        return delay * (1.0 - self.jitter * min(max(draw, 0.0), 1.0))

    def schedule(self, runs: int) -> list[float]:
        """The delays after 1..runs consecutive failures (for docs, status and tests)."""
        return [self.delay(n) for n in range(1, runs + 1)]
