"""Deadlines of the decisions in flight in this process: brought forward when many fall due together while the
model is not answering, and finishing work ahead of new work. Used by the decider (app/decision/decider.py), which
owns the time budget."""

from __future__ import annotations

import asyncio
import bisect
import os
import time
from collections.abc import Callable

YIELD_LIMIT_S = 0.05  # the longest a new attempt waits for due decisions to finish
DUE_S = 0.005  # a decision this close to its cut counts as due
INITIAL_COST_S, MIN_COST_S, MAX_COST_S = 0.004, 0.0005, 0.01  # seconds of work per decision, until measured
COST_SAMPLE_S = 1.0
# A decision is cut ahead of its deadline only while the model is evidently not answering: while more than
# this share of recent decisions waited for it until their deadline (ahead by up to the decision's floor as
# the share reaches all of them). A burst whose model has not answered yet looks the same at that point
# whether the model hangs or is only slow, and a slow model's answer is worth more than an early timeout.
HANG_SHARE = 0.9
HANG_WEIGHT = 1 / 64  # each finished decision's weight in that share: about the last 64 count
# While cuts may come early, the decisions due within this long after the earliest waiting one (or as far as
# its cut may come, if further) are the ones it competes with: the slack the budget leaves after a deadline
# (the router's 150 ms reserve and the 100 ms promise).
WINDOW_S = 0.25
TIMER_SLACK_S = 0.001  # event-loop timers fire to the millisecond: a cut this close counts as due


def _contention() -> float:
    """How many times over the machine's cores are wanted right now (runnable tasks per core, at least 1):
    on a shared machine a CPU-second of work takes that many seconds. Linux's /proc/stat; 1 elsewhere."""
    try:
        with open("/proc/stat", "rb") as f:
            running = next(int(line.split()[1]) for line in f if line.startswith(b"procs_running"))
    except (OSError, ValueError, StopIteration, IndexError):
        return 1.0
    return max(1.0, running / (os.cpu_count() or 1))


class Slot:
    """One decision in flight: its deadline, the floor below which it is never cut, and its timeout (set by
    the decider when it enters it)."""

    __slots__ = ("cut_at", "deadline", "earliest", "timeout")

    def __init__(self, deadline: float, earliest: float) -> None:
        self.deadline, self.earliest = deadline, earliest
        self.cut_at: float | None = None  # when it was told to stop waiting for its model
        self.timeout: asyncio.Timeout | None = None

    def expire(self) -> None:
        """End the decision's wait now (its task gets the timeout), unless its timeout has already gone off."""
        timeout = self.timeout
        if timeout is not None and not timeout.expired():
            timeout.reschedule(asyncio.get_running_loop().time())


def _deadline(slot: Slot) -> float:
    return slot.deadline


class InFlight:
    """The decisions in flight in this process, and when each stops waiting for its model.

    Answering after a deadline (cancel the model request, take the fallback, log, write the response) costs
    CPU, and so does each new request. When many decisions reach their deadline together (a hang storm: 200
    callers who started at once) the last answers of the burst queue behind all that work and leave late
    (measured: up to 330 ms past the budget). So the decisions still waiting for their model are cut in
    deadline order: each at its deadline while the model answers; and while it evidently does not (most
    recent decisions waited for it until their deadline), at most one per `cost` seconds (the CPU this
    process spends per decision, measured), early enough that those due within the window after it fit one
    `cost` apart before their own deadlines. It is worked out as the cuts come, from the decisions still
    waiting then: one whose model has answered no longer counts. (Reserving slots when requests arrived
    counted every request as a timeout to come: with more requests than CPU for that, and a model answering
    in time, each new slot pushed the others earlier, and 16% of answers that would have come were cut.)
    An attempt about to call the model first lets the decisions being cut be answered.

    `spread=False` (route and eval: their concurrency is not callers') keeps every deadline as it is.
    """

    def __init__(self, spread: bool = True, cpu: Callable[[], float] = time.process_time,
                 clock: Callable[[], float] = time.monotonic,
                 contention: Callable[[], float] = _contention) -> None:
        self.spread, self._cpu, self._clock, self._contention = spread, cpu, clock, contention
        self.cost = INITIAL_COST_S
        self.hangs = 0.0  # the share of recent decisions that waited for their model until their deadline
        self._waiting: list[Slot] = []  # not cut yet, by deadline
        self._cutting = 0  # cut and not yet released
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._timer_loop: asyncio.AbstractEventLoop | None = None  # a timer set in a loop since closed never fires
        self._yielding: set[asyncio.Future[None]] = set()  # attempts waiting for due decisions to be answered
        self._done = 0
        self._sample = (cpu(), 0, clock())

    def __len__(self) -> int:
        return len(self._waiting) + self._cutting

    def reserve(self, deadline: float, earliest: float) -> Slot:
        """Count a decision due at `deadline` that is never to be cut before `earliest`. Set `slot.timeout`
        (the decision's asyncio timeout, at `deadline`) before the event loop next turns: a cut reschedules it."""
        slot = Slot(deadline, earliest)
        bisect.insort(self._waiting, slot, key=_deadline)
        if self.spread and deadline <= self._waiting[0].deadline + max(WINDOW_S, self._early(self._waiting[0])):
            self._arm()  # the earliest decision's cut can only have come closer
        return slot

    def release(self, slot: Slot) -> None:
        """The decision is answered (or failed): it no longer competes. A cut that comes later because of
        this is found when the armed timer fires early."""
        if slot.cut_at is not None:
            self._cutting -= 1
        else:
            i = bisect.bisect_left(self._waiting, slot.deadline, key=_deadline)
            while i < len(self._waiting) and self._waiting[i] is not slot:
                i += 1
            if i < len(self._waiting):
                self._waiting.pop(i)
        self._settle()
        now = self._clock()
        if slot.cut_at is None or slot.cut_at >= slot.deadline - TIMER_SLACK_S:
            # Did it wait for its model until its deadline (cut then, or ended by the client's own timeout)?
            # One cut ahead of its deadline shows nothing about the model: it does not count.
            self.hangs += ((now >= slot.deadline - TIMER_SLACK_S) - self.hangs) * HANG_WEIGHT
        self._done += 1
        cpu, done, at = self._sample
        if now - at >= COST_SAMPLE_S and self._done > done:
            measured = (self._cpu() - cpu) / (self._done - done) * self._contention()
            self.cost = min(MAX_COST_S, max(MIN_COST_S, measured))
            self._sample = (self._cpu(), self._done, now)

    def _early(self, slot: Slot) -> float:
        """How far ahead of its deadline this decision may be cut now: nothing while the model answers, up to
        its floor when the decisions before it waited in vain."""
        evident = max(0.0, self.hangs - HANG_SHARE) / (1 - HANG_SHARE)
        return evident * max(0.0, slot.deadline - slot.earliest)

    def next_cut(self) -> float | None:
        """When the earliest waiting decision is to be cut: the latest time at or before its deadline from
        which it and the waiting decisions due within the window after it can be cut one `cost` apart, each at
        or before its own deadline (never earlier than it may be cut). None when nothing waits."""
        if not self._waiting:
            return None
        head = self._waiting[0]
        if not self.spread:
            return head.deadline
        early = self._early(head)
        if early <= 0:
            return head.deadline
        cut, horizon, width = head.deadline, head.deadline + max(WINDOW_S, early), self.cost
        for k, slot in enumerate(self._waiting):
            if slot.deadline > horizon:
                break
            cut = min(cut, slot.deadline - k * width)
        return max(cut, head.deadline - early)

    def cut_due(self, now: float) -> list[Slot]:
        """Take the waiting decisions whose cut has come by `now`, earliest deadline first."""
        cut: list[Slot] = []
        while (due := self.next_cut()) is not None and due <= now + TIMER_SLACK_S:
            slot = self._waiting.pop(0)
            slot.cut_at = now
            self._cutting += 1
            cut.append(slot)
        return cut

    def _arm(self) -> None:
        """Have the event loop wake at the next cut. A timer already set for earlier stays: when it fires it
        finds the cut later and sets another."""
        due = self.next_cut()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a test of the schedule itself): whoever calls cut_due drives it
            return
        if due is None or (due >= self._timer_at and self._timer_loop is loop):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(loop.time() + (due - self._clock()), self._on_timer)
        self._timer_at, self._timer_loop = due, loop

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        for slot in self.cut_due(self._clock()):
            slot.expire()
        self._arm()
        self._settle()

    def _due(self, now: float) -> bool:
        """Is a decision being answered after its cut, or about to be cut?"""
        due = self.next_cut()
        return self._cutting > 0 or (due is not None and due <= now + DUE_S)

    def _settle(self) -> None:
        """Wake the attempts waiting in `yield_to_due` once nothing is due."""
        if self._yielding and not self._due(self._clock()):
            for waiter in self._yielding:
                if not waiter.done():
                    waiter.set_result(None)
            self._yielding.clear()

    async def yield_to_due(self) -> None:
        """Let the event loop turn before the costly part of a request (building and sending the model call):
        requests that have just arrived get read and their arrival stamped, and decisions that are due get
        answered. Then, while another decision is being cut or is due, wait (at most YIELD_LIMIT_S) until it
        has been answered: asleep, not polling, so the CPU goes to the answers."""
        await asyncio.sleep(0)
        if not self._due(self._clock()):
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._yielding.add(waiter)
        timer = loop.call_later(YIELD_LIMIT_S, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._yielding.discard(waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
