"""Deadlines of the decisions in flight in this process: spread apart when they bunch up, and finishing work
ahead of new work. Used by the decider (app/decision.py), which owns the time budget."""

from __future__ import annotations

import asyncio
import bisect
import os
import time
from collections.abc import Callable

YIELD_LIMIT_S = 0.05  # the longest a new attempt waits for due decisions to finish
DUE_S = 0.005  # a decision this close to its deadline counts as due
INITIAL_COST_S, MIN_COST_S, MAX_COST_S = 0.004, 0.0005, 0.01  # seconds of work per decision, until measured
COST_SAMPLE_S = 1.0


def _contention() -> float:
    """How many times over the machine's cores are wanted right now (runnable tasks per core, at least 1):
    on a shared machine a CPU-second of work takes that many seconds. Linux's /proc/stat; 1 elsewhere."""
    try:
        with open("/proc/stat", "rb") as f:
            running = next(int(line.split()[1]) for line in f if line.startswith(b"procs_running"))
    except (OSError, ValueError, StopIteration, IndexError):
        return 1.0
    return max(1.0, running / (os.cpu_count() or 1))


class InFlight:
    """The deadlines of the decisions in flight in this process, each with a slot of CPU time to answer in.

    Answering after a deadline (cancel the model request, take the fallback, log, write the response) costs
    CPU, and so does each new request. When many decisions reach their deadline at the same instant (a hang
    storm: 200 callers who started together), the last answers of the burst queue behind all that work and
    leave late: measured, up to 330 ms past the budget. So each decision reserves a slot of `cost` seconds
    (the CPU this process spends per decision, measured) ending no later than its deadline and overlapping no
    other decision's slot: a burst is spread out before its deadline instead of piling up after it. In steady
    traffic slots rarely meet and deadlines stay where they are. And an attempt about to call the model first
    lets decisions that are due finish (earliest deadline first, in one event loop).

    `spread=False` (route and eval: their concurrency is not callers') keeps every deadline as it is.
    """

    def __init__(self, spread: bool = True, cpu: Callable[[], float] = time.process_time,
                 clock: Callable[[], float] = time.monotonic,
                 contention: Callable[[], float] = _contention) -> None:
        self.spread, self._cpu, self._clock, self._contention = spread, cpu, clock, contention
        self.cost = INITIAL_COST_S
        self._ends: list[float] = []  # sorted slot ends
        self._done = 0
        self._sample = (cpu(), 0, clock())

    def __len__(self) -> int:
        return len(self._ends)

    def reserve(self, deadline: float, earliest: float) -> float:
        """The latest slot end at or before `deadline` that overlaps no other slot (never before `earliest`)."""
        end = deadline
        if self.spread:
            width = self.cost
            i = bisect.bisect_left(self._ends, end + width)
            while i > 0 and self._ends[i - 1] > end - width:  # a slot [e - width, e] overlaps ours
                end = min(end, self._ends[i - 1] - width)
                i -= 1
            end = max(end, earliest)
        bisect.insort(self._ends, end)
        return end

    def release(self, end: float) -> None:
        i = bisect.bisect_left(self._ends, end)
        if i < len(self._ends) and self._ends[i] == end:
            self._ends.pop(i)
        self._done += 1
        cpu, done, at = self._sample
        now = self._clock()
        if now - at >= COST_SAMPLE_S and self._done > done:
            measured = (self._cpu() - cpu) / (self._done - done) * self._contention()
            self.cost = min(MAX_COST_S, max(MIN_COST_S, measured))
            self._sample = (self._cpu(), self._done, now)

    async def yield_to_due(self) -> None:
        """Let the event loop turn before the costly part of a request (building and sending the model call):
        requests that have just arrived get read and their arrival stamped, and decisions that are due get
        answered. Then wait (briefly, a turn at a time) while another decision is at or past its deadline."""
        start = time.monotonic()
        now = start
        await asyncio.sleep(0)
        while self._ends and self._ends[0] <= now + DUE_S and now - start < YIELD_LIMIT_S:
            await asyncio.sleep(0)
            now = time.monotonic()
