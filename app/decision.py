"""The decision: time budget, retries, validation and the failure policy, all in this one place.

Whatever the router does, hanging included, `decide` returns within the budget: the router gets the
budget minus a small reserve (for the offline rescue and writing the answer), and anything it has not
finished by then is cancelled.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_any
from tenacity.stop import stop_base

from .catalogue import NONE, Catalogue
from .offline_router import OfflineRouter
from .router import Choice, InvalidAnswer, ModelError, Query, Router

RESERVE_S = 0.15  # kept back from the router for the rescue path, event-loop lag under load, and the response
MIN_ATTEMPT_S = 0.15  # no point starting an attempt with less time than this
YIELD_LIMIT_S = 0.05  # the longest a new attempt waits for due decisions to finish
DUE_S = 0.005  # a decision this close to its deadline counts as due
INITIAL_COST_S, MIN_COST_S, MAX_COST_S = 0.004, 0.0005, 0.01  # seconds of work per decision, until measured
COST_SAMPLE_S = 1.0
MIN_ROUTER_SHARE = 0.5  # spreading never takes more than half of the router's time
NO_MATCH = "no suitable destination"


@dataclass
class Decision:
    outcome: str  # routed | no_match | timeout | llm_error | invalid_answer | fallback | no_destination
    body: dict[str, Any]
    router: str
    kind: str = "transfer"  # what was asked for: transfer or handoff
    chosen: str | None = None  # the router's validated answer (an id or "none"); None when it failed
    answered: str | None = None  # the catalogue id whose destination the answer carries
    failure: str | None = None  # what went wrong, when the router failed
    rescued_by: str | None = None  # "offline" or "fallback"
    attempts: int = 0
    hedges: int = 0
    cached: bool = False  # the answer came from the evaluation cache
    model: str | None = None
    score: float | None = None
    reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens the provider served from its cache
    total_ms: float = 0.0
    llm_ms: float = 0.0
    errors: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)  # "billing (no-answer)": left out of this request


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


@dataclass
class Decider:
    catalogue: Catalogue
    router: Router
    timeout: float
    max_attempts: int = 3
    on_failure: str = "error"  # error | fallback | offline
    offline: OfflineRouter | None = None
    breaker: CircuitBreaker | None = None
    in_flight: InFlight = field(default_factory=InFlight)  # shared by the engines a reload replaces

    def answer_for(self, entry_id: str, kind: str) -> dict[str, Any]:
        """The catalogue entry's own destination (or handoff) object: never anything a router wrote."""
        entry = self.catalogue.get(entry_id)
        target = entry.target(kind) if entry is not None else None
        if target is None:  # cannot happen after validation; refuse rather than answer something invented
            raise InvalidAnswer(f"id has no {kind} destination in the catalogue")
        return {"destination": target}

    async def decide(self, query: Query, started: float | None = None) -> Decision:
        started = time.monotonic() if started is None else started
        deadline = started + self.timeout - RESERVE_S
        decision = Decision(outcome="routed", body={}, router=self.router.name, kind=query.kind,
                            model=self.router.model, unreachable=[f"{i} ({why})" for i, why in query.unreachable])
        if not query.allowed:
            decision.outcome, decision.failure = "no_destination", "no_destination"
            what = "handoff" if query.kind == "handoff" else "transfer"
            decision.body = {"error": f"no {what} destination left to offer: " + (
                "every allowed one failed earlier in this call" if query.unreachable else
                "the catalogue has none for this assistant")}
            decision.total_ms = (time.monotonic() - started) * 1000
            return decision
        nominal = deadline
        deadline = self.in_flight.reserve(nominal, started + (nominal - started) * MIN_ROUTER_SHARE)
        try:
            async with asyncio.timeout_at(_loop_deadline(deadline)):
                choice = await self._with_retries(query, deadline, decision)
        except TimeoutError:
            decision.outcome, decision.failure = "timeout", "timeout"
        except InvalidAnswer as exc:
            decision.outcome, decision.failure = "invalid_answer", exc.kind
        except ModelError as exc:
            decision.outcome, decision.failure = "llm_error", exc.kind
        except Exception:
            # A bug or an error type nobody mapped: the caller is still on the line, so answer by the failure
            # policy like any other failure, and leave the full trace in the log for whoever fixes it.
            logging.getLogger("switchboard").exception("router_crashed")
            decision.outcome, decision.failure = "llm_error", "internal"
        else:
            self._accept(decision, choice, query)
        finally:
            self.in_flight.release(deadline)
        if decision.failure is not None:
            self._rescue(decision, query)
        decision.total_ms = (time.monotonic() - started) * 1000
        return decision

    async def _with_retries(self, query: Query, deadline: float, decision: Decision) -> Choice:
        try:
            return await self._retry_loop(query, deadline, decision)
        except BaseException as exc:
            # tenacity keeps each attempt's exception, and its traceback holds the frames that hold tenacity's
            # state: a reference cycle of ~200 objects per failed decision, which under a hang storm fed full
            # garbage-collection passes of hundreds of ms. The decision needs the error's kind, not its frames.
            raise exc.with_traceback(None) from None

    async def _retry_loop(self, query: Query, deadline: float, decision: Decision) -> Choice:
        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, ModelError) and exc.retryable

        # Called rather than iterated: the iterator form keeps its state on the AsyncRetrying object, and the two
        # refer to each other (one more cycle per decision for the garbage collector).
        retrying = AsyncRetrying(retry=retry_if_exception(retryable),
                                 stop=stop_any(stop_after_attempt(self.max_attempts), _OutOfTime(deadline)),
                                 wait=_backoff, reraise=True)
        try:
            return await retrying(self._attempt, query, deadline, decision)
        finally:
            retrying.iter_state.reset()  # its pending actions refer back to `retrying`: one more cycle

    async def _attempt(self, query: Query, deadline: float, decision: Decision) -> Choice:
        """One model attempt, settled with the breaker exactly once whichever way it ends."""
        await self.in_flight.yield_to_due()
        breaker = self.breaker if self.router.name == "llm" and self.breaker is not None else None
        if breaker is not None and not breaker.allow():
            raise ModelError("breaker_open", "circuit breaker open after repeated failures", retryable=False)
        decision.attempts += 1
        answered = False  # stays False on errors, timeouts and cancellation: each is a model failure
        t0 = time.monotonic()
        try:
            choice = await self.router.choose(query, deadline - t0)
            answered = True
            self._validate(choice, query)
            return choice
        except ModelError as exc:
            # An answer that is not an allowed id still shows the model is up: it is retried, but does not
            # count towards opening the breaker (else one caller could talk it open for everyone).
            answered = answered or isinstance(exc, InvalidAnswer)
            decision.errors.append(exc.kind)
            raise
        finally:
            decision.llm_ms += (time.monotonic() - t0) * 1000
            if breaker is not None:
                breaker.record(answered)

    @staticmethod
    def _validate(choice: Choice, query: Query) -> None:
        if choice.destination != NONE and choice.destination not in query.allowed:
            raise InvalidAnswer("answer is not an allowed id")

    def _fallback(self, query: Query) -> str | None:
        """The catalogue's fallback, if this voice assistant may transfer there: a per-assistant subset is a
        promise about where its calls can go, failures included."""
        fallback = self.catalogue.fallback
        return fallback if fallback and fallback in query.allowed else None

    def _accept(self, decision: Decision, choice: Choice, query: Query) -> None:
        decision.chosen = choice.destination
        decision.score, decision.reason = choice.score, choice.reason
        decision.prompt_tokens += choice.prompt_tokens
        decision.completion_tokens += choice.completion_tokens
        decision.hedges += int(choice.hedged)
        decision.cached = choice.cached
        decision.model = choice.model or decision.model
        if choice.destination == NONE:
            decision.outcome = "no_match"
            fallback = self._fallback(query)
            if fallback:
                decision.answered = fallback
                decision.body = self.answer_for(fallback, query.kind)
            else:
                decision.body = {"error": NO_MATCH}
        else:
            decision.answered = choice.destination
            decision.body = self.answer_for(choice.destination, query.kind)

    def _rescue(self, decision: Decision, query: Query) -> None:
        """The failure policy: the offline router's confident choice, then the catalogue's fallback, else an
        error that says what happened."""
        if self.on_failure == "offline" and self.offline is not None and self.router is not self.offline:
            best, confidence, _ = self.offline.rank(query)
            if confidence >= self.offline.threshold and best in query.allowed:
                decision.outcome, decision.rescued_by = "fallback", "offline"
                decision.chosen, decision.answered, decision.score = best, best, round(confidence, 4)
                decision.body = self.answer_for(best, query.kind)
                return
        fallback = self._fallback(query)
        if fallback:
            decision.outcome, decision.rescued_by = "fallback", "fallback"
            decision.answered = fallback
            decision.body = self.answer_for(fallback, query.kind)
            return
        reasons = {"timeout": "routing timed out", "invalid_answer": "routing model gave no valid destination"}
        decision.body = {"error": reasons.get(decision.outcome, "routing model unavailable")}


class _OutOfTime(stop_base):
    """Stop retrying when the next attempt, after its backoff, would start with too little time left."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, state: RetryCallState) -> bool:
        return self.deadline - time.monotonic() - (state.upcoming_sleep or 0) < MIN_ATTEMPT_S


def _loop_deadline(deadline: float) -> float:
    """Convert a time.monotonic() deadline to the event loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())


def _backoff(state: RetryCallState) -> float:
    """Jittered exponential backoff; a 429's Retry-After when given (the stop rule drops it if it won't fit)."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, ModelError) and exc.retry_after is not None:
        return exc.retry_after
    if isinstance(exc, InvalidAnswer):
        return 0.0  # a bad answer is not load: ask again at once
    return random.uniform(0, min(0.4, 0.05 * 2 ** state.attempt_number))
