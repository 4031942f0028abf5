"""The circuit breaker: every way out of a model attempt settles it exactly once, so it opens on hangs as well
as errors, never sticks half-open, and recovers on its own when the model is back.

Fast tests at the router seam (a scripted router, no HTTP), then the reported case end to end over HTTP."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.decision.decider import CircuitBreaker, Decider
from app.loading import load_catalogue as load
from app.routers.base import Capabilities, Choice, InvalidAnswer, ModelError, Query
from app.vapi.conversation import Conversation, Turn
from tests.conftest import ROOT, decision_logs
from tests.fake_openai import HANG, answer, status
from tests.vapi_payloads import transfer_request

CATALOGUE = load(ROOT / "destinations.json")
QUERY = Query(Conversation((Turn("caller", "my internet is down"),), None, "messages"), "Caller: my internet is down",
              CATALOGUE.ids)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedRouter:
    """Answers from a script: an id, "hang", or a ModelError to raise."""

    name = "scripted"
    model = "scripted"
    capabilities = Capabilities(calls_model=True)  # a model server: the breaker guards it

    def __init__(self, *script: str | ModelError) -> None:
        self.script = list(script)
        self.calls = 0

    async def choose(self, query: Query, timeout: float, **_: object) -> Choice:
        self.calls += 1
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, ModelError):
            raise step
        if step == "hang":
            await asyncio.sleep(3600)
        return Choice(destination=step)


def decider(router: ScriptedRouter, breaker: CircuitBreaker, timeout: float = 0.4) -> Decider:
    return Decider(CATALOGUE, router, timeout, max_attempts=1, breaker=breaker)


def server_error() -> ModelError:
    return ModelError("server_error", "HTTP 500", retryable=True)


def test_unit_opens_after_failures_probes_once_and_closes():
    clock, changes = Clock(), []
    breaker = CircuitBreaker(3, 10.0, clock, on_change=lambda old, new: changes.append((old, new)))
    for _ in range(3):
        assert breaker.allow()
        breaker.record(False)
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 10
    assert breaker.state == "half_open"
    assert breaker.allow() and not breaker.allow()  # one probe at a time
    breaker.record(False)  # the probe failed: open again, for a whole new cooldown
    assert breaker.state == "open"
    clock.now += 10
    assert breaker.allow()
    breaker.record(True)
    assert breaker.state == "closed" and breaker.allow()
    assert changes == [("closed", "open"), ("half_open", "open"), ("half_open", "closed")]


def test_unit_off_when_failures_is_zero():
    breaker = CircuitBreaker(0, 1.0)
    for _ in range(50):
        breaker.record(False)
    assert breaker.allow() and breaker.state == "closed" and not breaker.enabled


def test_a_hung_probe_reopens_and_the_breaker_recovers():
    """Reported: 3 errors open it, the probe hangs until the deadline cancels it, then the model is healthy
    again; the breaker stayed half-open for good and routing stayed off."""
    clock = Clock()
    breaker = CircuitBreaker(3, 5.0, clock)
    router = ScriptedRouter(server_error(), server_error(), server_error(), "hang", "billing")

    async def run() -> list[str]:
        d = decider(router, breaker)
        outcomes = [(await d.decide(QUERY)).failure or "" for _ in range(3)]
        assert breaker.state == "open"
        clock.now += 5
        probe = await d.decide(QUERY)  # the model hangs during the half-open probe
        outcomes.append(probe.failure or "")
        assert breaker.state == "open" and not breaker.probing, "a timed-out probe must reopen the breaker"
        clock.now += 5
        outcomes += [(await d.decide(QUERY)).chosen or "" for _ in range(5)]
        return outcomes

    outcomes = asyncio.run(run())
    assert outcomes[:4] == ["server_error"] * 3 + ["timeout"]
    assert outcomes[4:] == ["billing"] * 5
    assert breaker.state == "closed" and router.calls == 3 + 1 + 5


def test_a_hang_storm_opens_the_breaker():
    """Reported: with 3 failures to open, 8 calls in a row each waited out the budget and it never opened."""
    breaker = CircuitBreaker(3, 60.0)
    router = ScriptedRouter("hang")

    async def run() -> list[float]:
        d = decider(router, breaker, timeout=0.3)
        waits = []
        for _ in range(8):
            t0 = time.monotonic()
            decision = await d.decide(QUERY)
            waits.append(time.monotonic() - t0)
            assert decision.failure in ("timeout", "breaker_open")
        return waits

    waits = asyncio.run(run())
    assert router.calls == 3  # the model was called three times, then not at all
    assert breaker.state == "open"
    assert sum(w > 0.15 for w in waits) == 3, waits


def test_an_invalid_answer_settles_the_probe_without_opening():
    """An answer that is not an allowed id shows the model is up: the probe closes the breaker, and a caller
    who talks the model into nonsense cannot open it for everyone."""
    clock = Clock()
    breaker = CircuitBreaker(2, 5.0, clock)
    router = ScriptedRouter(server_error(), server_error(), InvalidAnswer("not an id"), "not_an_id")

    async def run() -> None:
        d = decider(router, breaker)
        for _ in range(2):
            await d.decide(QUERY)
        clock.now += 5
        assert (await d.decide(QUERY)).failure == "invalid_answer"
        assert breaker.state == "closed"
        for _ in range(5):
            assert (await d.decide(QUERY)).failure == "invalid_answer"  # an id outside the catalogue
        assert breaker.state == "closed"

    asyncio.run(run())


def test_a_cancelled_attempt_counts_as_a_failure():
    """A decision cancelled from outside (the caller hung up, the server is stopping) still settles its attempt."""
    clock = Clock()
    breaker = CircuitBreaker(1, 5.0, clock)
    router = ScriptedRouter("hang")

    async def run() -> None:
        d = decider(router, breaker, timeout=10)
        clock.now += 0
        task = asyncio.create_task(d.decide(QUERY))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert breaker.state == "open" and not breaker.probing


def test_each_attempt_asks_the_breaker(llm_service, fake, log_records):
    """Retries stop when the breaker opens mid-decision: it is asked before every attempt."""
    fake.default = status(500)
    service = llm_service(timeout=3, breaker_failures=2, breaker_cooldown=60, max_attempts=3)
    service.post(transfer_request([("user", "my internet is down")]))
    log = decision_logs(log_records)[-1]
    assert log["attempts"] == 2 and log["failure"] == "breaker_open"
    assert len(fake.requests) == 2


def test_hung_probe_end_to_end(llm_service, fake, log_records):
    """The reported sequence over HTTP: three 500s, a hung probe, then a healthy model routes again."""
    service = llm_service(timeout=1, breaker_failures=3, breaker_cooldown=0.3, max_attempts=1)
    body = transfer_request([("user", "my internet keeps dropping")])
    fake.script(status(500), status(500), status(500), HANG)
    for _ in range(3):
        service.post(body)
    assert service.client.get("/healthz").json()["breaker"] == "open"
    time.sleep(0.35)
    service.post(body)  # the probe hangs until the deadline
    assert decision_logs(log_records)[-1]["failure"] == "timeout"
    assert service.client.get("/healthz").json()["breaker"] == "open"
    fake.default = answer("tech_support")
    deadline = time.monotonic() + 5
    while service.client.get("/healthz").json()["breaker"] != "half_open" and time.monotonic() < deadline:
        time.sleep(0.05)
    routed = [service.post(body).json()["destination"].get("number") for _ in range(5)]
    assert routed == ["+14155550177"] * 5
    assert service.client.get("/healthz").json()["breaker"] == "closed"
    changes = [r.fields for r in log_records if r.getMessage() == "breaker"]  # type: ignore[attr-defined]
    assert [(c["from"], c["to"]) for c in changes] == [("closed", "open"), ("half_open", "open"),
                                                       ("half_open", "closed")]
