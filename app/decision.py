"""The decision: time budget, retries, validation and the failure policy, all in this one place.

Whatever the router does, hanging included, `decide` returns within the budget: the router gets the
budget minus a small reserve (for the offline rescue and writing the answer), and anything it has not
finished by then is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
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

RESERVE_S = 0.1  # kept back from the router for the rescue path, event-loop lag under load, and the response
MIN_ATTEMPT_S = 0.15  # no point starting an attempt with less time than this
NO_MATCH = "no suitable destination"


@dataclass
class Decision:
    outcome: str  # routed | no_match | timeout | llm_error | invalid_answer | fallback
    body: dict[str, Any]
    router: str
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
    total_ms: float = 0.0
    llm_ms: float = 0.0
    errors: list[str] = field(default_factory=list)


class CircuitBreaker:
    """After `failures` consecutive model failures, stop calling the model for `cooldown` seconds, then let
    one probe through; its result closes or reopens the circuit."""

    def __init__(self, failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures, self.cooldown, self.clock = failures, cooldown, clock
        self.consecutive = 0
        self.opened_at: float | None = None
        self.probing = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.clock() - self.opened_at >= self.cooldown else "open"

    def allow(self) -> bool:
        if self.failures <= 0 or self.opened_at is None:
            return True
        if self.state == "half_open" and not self.probing:
            self.probing = True
            return True
        return False

    def success(self) -> None:
        self.consecutive, self.opened_at, self.probing = 0, None, False

    def failure(self) -> None:
        self.consecutive += 1
        if self.failures > 0 and (self.probing or self.consecutive >= self.failures):
            self.opened_at, self.probing = self.clock(), False


@dataclass
class Decider:
    catalogue: Catalogue
    router: Router
    timeout: float
    max_attempts: int = 3
    on_failure: str = "error"  # error | fallback | offline
    offline: OfflineRouter | None = None
    breaker: CircuitBreaker | None = None

    def answer_for(self, entry_id: str) -> dict[str, Any]:
        entry = self.catalogue.get(entry_id)
        if entry is None:  # cannot happen after validation; refuse rather than answer something invented
            raise InvalidAnswer("id not in catalogue")
        return {"destination": entry.destination}

    async def decide(self, query: Query, started: float | None = None) -> Decision:
        started = time.monotonic() if started is None else started
        deadline = started + self.timeout - RESERVE_S
        decision = Decision(outcome="routed", body={}, router=self.router.name, model=self.router.model)
        try:
            if self.breaker is not None and self.router.name == "llm" and not self.breaker.allow():
                raise ModelError("breaker_open", "circuit breaker open after repeated failures", retryable=False)
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
        if decision.failure is not None:
            self._rescue(decision, query)
        decision.total_ms = (time.monotonic() - started) * 1000
        return decision

    async def _with_retries(self, query: Query, deadline: float, decision: Decision) -> Choice:
        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, ModelError) and exc.retryable

        retrying = AsyncRetrying(retry=retry_if_exception(retryable),
                                 stop=stop_any(stop_after_attempt(self.max_attempts), _OutOfTime(deadline)),
                                 wait=_backoff, reraise=True)
        async for attempt in retrying:
            with attempt:
                decision.attempts += 1
                t0 = time.monotonic()
                try:
                    choice = await self.router.choose(query, deadline - t0)
                    self._validate(choice, query)
                except ModelError as exc:
                    decision.errors.append(exc.kind)
                    if self.breaker is not None and self.router.name == "llm" and not isinstance(exc, InvalidAnswer):
                        self.breaker.failure()
                    raise
                finally:
                    decision.llm_ms += (time.monotonic() - t0) * 1000
                if self.breaker is not None and self.router.name == "llm":
                    self.breaker.success()
                return choice
        raise AssertionError("unreachable: tenacity reraises the last error")

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
                decision.body = self.answer_for(fallback)
            else:
                decision.body = {"error": NO_MATCH}
        else:
            decision.answered = choice.destination
            decision.body = self.answer_for(choice.destination)

    def _rescue(self, decision: Decision, query: Query) -> None:
        """The failure policy: the offline router's confident choice, then the catalogue's fallback, else an
        error that says what happened."""
        if self.on_failure == "offline" and self.offline is not None and self.router is not self.offline:
            best, confidence, _ = self.offline.rank(query)
            if confidence >= self.offline.threshold and best in query.allowed:
                decision.outcome, decision.rescued_by = "fallback", "offline"
                decision.chosen, decision.answered, decision.score = best, best, round(confidence, 4)
                decision.body = self.answer_for(best)
                return
        fallback = self._fallback(query)
        if fallback:
            decision.outcome, decision.rescued_by = "fallback", "fallback"
            decision.answered = fallback
            decision.body = self.answer_for(fallback)
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
