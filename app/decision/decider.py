"""The decision: time budget, retries, hedging, validation and the failure policy, all in this one place.

Whatever the router does, hanging included, `decide` returns within the budget: the router gets the
budget minus a small reserve (for the offline rescue and writing the answer), and anything it has not
finished by then is cancelled. The pieces it applies have modules of their own: the circuit breaker
(breaker.py), the deadlines of the decisions in flight (deadlines.py), when to hedge (hedging.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_any
from tenacity.stop import stop_base

from app.catalogue.destinations import NONE, TRANSFER, Catalogue
from app.decision.breaker import CircuitBreaker
from app.decision.deadlines import InFlight
from app.decision.hedging import Hedging
from app.logs import LOGGER
from app.routers.base import Choice, InvalidAnswer, ModelError, Query, Retry, Router, RunnerUp, Usage
from app.routers.offline import OfflineRouter
from app.settings import MIN_ATTEMPT_S, RESERVE_S  # kept back for the answer; the least an attempt may start with

MIN_ROUTER_SHARE = 0.5  # spreading deadlines never takes more than half of the router's time
NO_MATCH = "no suitable destination"
FAILURE_ANSWERS = {"timeout": "routing timed out", "invalid_answer": "routing model gave no valid destination",
                   "low_confidence": "routing was not confident enough to transfer"}


@dataclass
class Decision:
    # routed | closed | no_match | timeout | llm_error | invalid_answer | low_confidence | fallback | no_destination
    outcome: str
    body: dict[str, Any]
    router: str
    kind: str = "transfer"  # what was asked for: transfer or handoff
    chosen: str | None = None  # the router's validated answer (an id or "none"); None when it failed
    answered: str | None = None  # the catalogue id whose destination the answer carries
    closed: str | None = None  # an id that was not answered because it is closed now (business hours)
    failure: str | None = None  # what went wrong, when the router failed
    rescued_by: str | None = None  # the rescuing router's name, or "fallback" (the catalogue's)
    attempts: int = 0
    hedges: int = 0  # hedged requests sent
    cached: bool = False  # the answer came from the evaluation cache
    model: str | None = None
    score: float | None = None  # the router's confidence in its answer, when it has one
    unscored: str | None = None  # why a router that scores its answers has no score for this one
    candidate: str | None = None  # the router's best id before its threshold (evaluation sweeps over it); None:
    # nothing matched at all
    runner_ups: tuple[RunnerUp, ...] = ()  # the router's best-ranked ids, scores and matched words (explanations)
    reason: str | None = None
    prompt_tokens: int = 0  # every attempt's tokens, failed ones included
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens the provider served from its cache
    total_ms: float = 0.0
    llm_ms: float = 0.0
    errors: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)  # "billing (no-answer)": left out of this request

    def spend(self, usage: Usage) -> None:
        self.prompt_tokens += usage.prompt
        self.completion_tokens += usage.completion
        self.cached_tokens += usage.cached


@dataclass
class _Run:
    """One decision's attempts: what the next attempt needs to know."""

    query: Query
    deadline: float
    decision: Decision
    retry: Retry | None = None  # set after an invalid answer: the next attempt tells the model why


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
    hedging: Hedging | None = None
    min_confidence: float = 0.0  # answers less sure than this are not routed, if their score is a probability

    def answer_for(self, entry_id: str, kind: str) -> dict[str, Any]:
        """The catalogue entry's own destination (or handoff) object: never anything a router wrote."""
        entry = self.catalogue.get(entry_id)
        target = entry.target(kind) if entry is not None else None
        if target is None:  # cannot happen after validation; refuse rather than answer something invented
            raise InvalidAnswer(f"id has no {kind} destination in the catalogue")
        return {"destination": target}

    async def decide(self, query: Query, started: float | None = None) -> Decision:
        started = time.monotonic() if started is None else started
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
        deadline = started + self.timeout - RESERVE_S
        slot = self.in_flight.reserve(deadline, started + (deadline - started) * MIN_ROUTER_SHARE)
        try:  # in_flight cuts it earlier (through its timeout) only while the model hangs and many fall due at once
            async with asyncio.timeout_at(_loop_deadline(deadline)) as slot.timeout:
                choice = await self._with_retries(_Run(query, deadline, decision))
        except TimeoutError:
            decision.outcome, decision.failure = "timeout", "timeout"
        except InvalidAnswer as exc:
            decision.outcome, decision.failure = "invalid_answer", exc.kind
        except ModelError as exc:
            decision.outcome, decision.failure = "llm_error", exc.kind
        except Exception:
            # A bug or an error type nobody mapped: the caller is still on the line, so answer by the failure
            # policy like any other failure, and leave the full trace in the log for whoever fixes it.
            logging.getLogger(LOGGER).exception("router_crashed")
            decision.outcome, decision.failure = "llm_error", "internal"
        else:
            self._accept(decision, choice, query)
        finally:
            self.in_flight.release(slot)
        if decision.failure is not None:
            self._rescue(decision, query)
        decision.total_ms = (time.monotonic() - started) * 1000
        return decision

    async def _with_retries(self, run: _Run) -> Choice:
        try:
            return await self._retry_loop(run)
        except (ModelError, asyncio.CancelledError, TimeoutError) as exc:
            # tenacity keeps each attempt's exception, and its traceback holds the frames that hold tenacity's
            # state: a reference cycle of ~200 objects per failed decision, which under a hang storm fed full
            # garbage-collection passes of hundreds of ms. The decision needs the error's kind, not its frames.
            # (Anything else is a bug, rare, and keeps its traceback for the log.)
            raise exc.with_traceback(None) from None

    async def _retry_loop(self, run: _Run) -> Choice:
        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, ModelError) and exc.retryable

        # Called rather than iterated: the iterator form keeps its state on the AsyncRetrying object, and the two
        # refer to each other (one more cycle per decision for the garbage collector).
        retrying = AsyncRetrying(retry=retry_if_exception(retryable),
                                 stop=stop_any(stop_after_attempt(self.max_attempts), _OutOfTime(run.deadline)),
                                 wait=_backoff, reraise=True)
        try:
            return await retrying(self._attempt, run)
        finally:
            retrying.iter_state.reset()  # its pending actions refer back to `retrying`: one more cycle

    async def _attempt(self, run: _Run) -> Choice:
        """One model attempt, settled with the breaker exactly once whichever way it ends."""
        await self.in_flight.yield_to_due()
        breaker = self.breaker if self.router.capabilities.calls_model else None  # it guards a model server
        if breaker is not None and not breaker.allow():
            raise ModelError("breaker_open", "circuit breaker open after repeated failures", retryable=False)
        run.decision.attempts += 1
        answered = False  # stays False on errors, timeouts and cancellation: each is a model failure
        t0 = time.monotonic()
        try:
            choice = await self._call(run)
            answered = True
            self._validate(choice, run.query)
            return choice
        except ModelError as exc:
            # An answer that is not an allowed id still shows the model is up: it is retried (told why), but
            # does not count towards opening the breaker (else one caller could talk it open for everyone).
            answered = answered or isinstance(exc, InvalidAnswer)
            run.decision.errors.append(exc.kind)
            run.decision.spend(exc.usage)
            if isinstance(exc, InvalidAnswer):
                run.retry = Retry(exc.answer, exc.detail)
            raise
        finally:
            elapsed = time.monotonic() - t0
            run.decision.llm_ms += elapsed * 1000
            if answered and self.hedging is not None:
                self.hedging.observe(elapsed)
            if breaker is not None:
                breaker.record(answered)

    async def _call(self, run: _Run) -> Choice:
        """The router call, hedged when it is slow: one more request goes out (to the fallback model or server
        if one is set) and the first valid answer wins; the other is cancelled."""
        query, timeout = run.query, run.deadline - time.monotonic()
        hedging = self.hedging if self.router.capabilities.calls_model else None  # a second model request
        if hedging is None or not hedging.enabled or timeout <= hedging.delay():
            choice = await self.router.choose(query, timeout, retry=run.retry)
            run.decision.spend(choice.usage)
            return choice
        hedging.attempt_started()
        first = asyncio.ensure_future(self.router.choose(query, timeout, retry=run.retry))
        pending: set[asyncio.Future[Choice]] = {first}
        try:
            done, pending = await asyncio.wait(pending, timeout=hedging.delay())
            if not done and hedging.take():
                run.decision.hedges += 1
                pending.add(asyncio.ensure_future(self.router.choose(query, run.deadline - time.monotonic(),
                                                                     retry=run.retry, hedge=True)))
            failures: list[BaseException] = []
            while True:
                winner: Choice | None = None
                for task in done:  # read every finished task: an unread exception is logged as a leak
                    failed = task.exception()
                    if failed is not None:
                        failures.append(failed)
                    elif winner is None:
                        winner = task.result()
                    else:  # both answered at once: the other's tokens were spent too
                        run.decision.spend(task.result().usage)
                if winner is not None:
                    for other in failures:  # a failed twin's tokens were spent too
                        run.decision.spend(other.usage if isinstance(other, ModelError) else Usage())
                    run.decision.spend(winner.usage)
                    return winner
                if not pending:
                    for other in failures[1:]:  # the first is raised, and spent where it is caught
                        run.decision.spend(other.usage if isinstance(other, ModelError) else Usage())
                    raise failures[0]
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pending:
                task.cancel()

    @staticmethod
    def _validate(choice: Choice, query: Query) -> None:
        if choice.destination != NONE and choice.destination not in query.allowed:
            raise InvalidAnswer("answer is not an allowed id", choice.destination)  # its tokens are counted

    def _fallback(self, query: Query) -> str | None:
        """The catalogue's fallback, if this voice assistant may transfer there: a per-assistant subset is a
        promise about where its calls can go, failures included."""
        fallback = self.catalogue.fallback
        return fallback if fallback and fallback in query.allowed else None

    def _accept(self, decision: Decision, choice: Choice, query: Query) -> None:
        """Take the router's answer. Nothing raised here leaves `decide`: whatever fails (an hours rule that
        cannot be worked out for this time, say) goes to the failure policy like a router failure, its trace
        in the log once."""
        try:
            self._take(decision, choice, query)
        except Exception:
            logging.getLogger(LOGGER).exception("accept_crashed")
            _unanswer(decision)
            decision.outcome, decision.failure = "llm_error", "internal"

    def _take(self, decision: Decision, choice: Choice, query: Query) -> None:
        decision.chosen = choice.destination
        decision.candidate = (choice.destination if choice.candidate is None else choice.candidate) or None
        decision.runner_ups = choice.runner_ups
        decision.score, decision.reason = choice.score, choice.reason
        decision.unscored = choice.unscored
        decision.cached = choice.cached
        decision.model = choice.model or decision.model
        if choice.destination == NONE:
            decision.outcome = "no_match"
            fallback = self._fallback(query)
            if fallback:
                self._answer(decision, fallback, query)
            else:
                decision.body = {"error": NO_MATCH}
        elif self.min_confidence > 0 and self.router.capabilities.probability and (
                choice.unscored is not None or (choice.score is not None and choice.score < self.min_confidence)):
            # Not routed: the failure policy answers (and `chosen` becomes what it chooses, if anything). An
            # answer whose score cannot be worked out (`unscored` says why) is no surer than a low one; an
            # answer from a server that gives no log-probabilities at all has neither, and is routed: the
            # minimum cannot apply there, as /healthz says.
            decision.outcome, decision.failure, decision.chosen = "low_confidence", "low_confidence", None
        else:
            self._answer(decision, choice.destination, query)
            if decision.closed is not None:
                decision.outcome = "closed"

    def _answer(self, decision: Decision, entry_id: str, query: Query) -> None:
        """Answer `entry_id`, or, while it is closed, the entry its `after_hours` chain leads to; with nowhere
        to go, an error that says when it opens, for the voice assistant to tell the caller."""
        at = query.at or dt.datetime.now(dt.UTC)
        target, why = self.catalogue.open_target(entry_id, at, query.allowed)
        if target != entry_id:
            decision.closed = entry_id
        decision.answered = target
        decision.body = self.answer_for(target, query.kind) if target is not None else {"error": why}
        if target is not None and target != entry_id and query.kind == TRANSFER:
            # The caller hears why they are not reaching `entry_id` and when they could: its closed_message,
            # filled from the catalogue's own template. Only the message changes; the destination stays the
            # catalogue's (copied: the catalogue's object is shared by every answer). Handoff destinations
            # carry no message in Vapi's schema, so a handoff is answered as written.
            message = self.catalogue.closed_message(entry_id, at)
            if message is not None:
                decision.body = {"destination": {**decision.body["destination"], "message": message}}

    def _rescue(self, decision: Decision, query: Query) -> None:
        """The failure policy. Should it fail too, the answer is an error body, never an exception out of
        `decide` (a trace is logged unless the failure being rescued already logged one)."""
        outcome = decision.outcome
        try:
            self._policy(decision, query)
        except Exception as exc:
            log = logging.getLogger(LOGGER)
            if decision.failure == "internal":  # its trace is in the log already: likely the same fault
                log.error("rescue_crashed", extra={"fields": {"error": f"{type(exc).__name__}: {exc}"[:200]}})
            else:
                log.exception("rescue_crashed")
            _unanswer(decision)
            decision.outcome, decision.rescued_by = outcome, None
            decision.body = {"error": FAILURE_ANSWERS.get(decision.failure or "", "routing model unavailable")}

    def _policy(self, decision: Decision, query: Query) -> None:
        """The offline router's confident choice, then the catalogue's fallback, else an error that says what
        happened."""
        if self.on_failure == "offline" and self.offline is not None and self.router.capabilities.rescuable:
            best, confidence, _ = self.offline.rank(query)
            if confidence >= self.offline.threshold and best in query.allowed:
                # `chosen` is what the decision chose, rescue included; `candidate` and `score` stay the
                # router's own (a low-confidence LLM answer keeps its id and probability there).
                decision.outcome, decision.rescued_by, decision.chosen = "fallback", self.offline.name, best
                self._answer(decision, best, query)
                return
        fallback = self._fallback(query)
        if fallback:
            decision.outcome, decision.rescued_by = "fallback", "fallback"
            self._answer(decision, fallback, query)
            return
        decision.body = {"error": FAILURE_ANSWERS.get(decision.failure or "", "routing model unavailable")}


def _unanswer(decision: Decision) -> None:
    """Forget an answer that was half made when something failed: the failure policy starts afresh."""
    decision.chosen = decision.answered = decision.closed = None
    decision.body = {}


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
