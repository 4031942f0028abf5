"""The circuit breaker: stop calling a model that keeps failing, and find out when it is back."""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    """After `failures` consecutive failed model attempts, stop calling the model for `cooldown` seconds, then
    let one probe through; its result closes or reopens the circuit.

    Every attempt that `allow()` lets through must be settled by exactly one `record()`, whatever way it ends
    (answer, error, timeout, cancellation): the decider does it in a `finally`. A probe that is never settled
    would keep the circuit half-open, with routing off, until a restart.
    """

    def __init__(self, failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[str, str], None] | None = None) -> None:
        self.failures, self.cooldown, self.clock = failures, cooldown, clock
        self.on_change = on_change  # (old state, new state), for logs and alerts
        self.consecutive = 0
        self.opened_at: float | None = None
        self.probing = False

    @property
    def enabled(self) -> bool:
        return self.failures > 0

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.clock() - self.opened_at >= self.cooldown else "open"

    def allow(self) -> bool:
        if not self.enabled or self.opened_at is None:
            return True
        if self.state == "half_open" and not self.probing:
            self.probing = True
            return True
        return False

    def record(self, ok: bool) -> None:
        """Settle one attempt: `ok` when the model answered (even with an id that is not allowed)."""
        if not self.enabled:
            return
        before = self.state
        if ok:
            self.consecutive, self.opened_at, self.probing = 0, None, False
        else:
            self.consecutive += 1
            if self.probing or self.consecutive >= self.failures:
                self.opened_at, self.probing = self.clock(), False
        after = self.state
        if after != before and self.on_change is not None:
            self.on_change(before, after)
