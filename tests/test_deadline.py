"""The deadline under load.

A timed-out decision leaves nothing for the garbage collector: under a hang storm, every timed-out decision
used to leave ~200 objects in reference cycles (exceptions keeping their tracebacks, frames and tenacity's
state alive); full collections of 240-580 ms then ran every few seconds and pushed answers past the
deadline. Counted here, not timed: gc.collect() reports what it freed.

And decisions are cut ahead of their deadline only when the model evidently hangs: reserving a slot of CPU
per request on arrival cut 16% of a slow model's answers (1.5-1.7 s against a 2 s budget) once requests came
faster than one per slot. The schedule is driven here with a fake clock (`simulate`); two tests run the
decider against the fake model for real.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from app.decision import deadlines
from app.decision.deadlines import InFlight, Slot
from app.decision.decider import Decision
from app.engine import Clients, Runtime, build_engine
from app.loading import load_routing
from app.settings import Settings
from app.vapi.messages import parse_request
from tests.conftest import ROOT
from tests.fake_openai import HANG, Behaviour, FakeOpenAI, answer, status
from tests.vapi_payloads import transfer_request

T = TypeVar("T")
REQUEST = parse_request(transfer_request([("user", "I was charged twice")])["message"])


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """The service runs on uvloop (uvicorn picks it); the stdlib loop's own transports hold a cycle each."""
    if sys.platform == "win32":
        return asyncio.run(main())
    import uvloop

    return uvloop.run(main())


def cycles_per_decision(fake: FakeOpenAI, n: int = 20, **overrides: object) -> float:
    values: dict[str, object] = {"openai_base_url": fake.base_url, "openai_api_key": "k", "timeout": 0.3,
                                 "destinations": ROOT / "destinations.json", "prompt": ROOT / "prompts/route.md",
                                 "hedge_delay": 0, **overrides}
    settings = Settings(**values)
    routing = load_routing(settings)

    async def main() -> int:
        clients = Clients.from_settings(settings)
        try:
            engine = build_engine(settings, routing, clients)
            for _ in range(3):  # warm: pools, caches, lazily built schemas
                await engine.decide(REQUEST)
            gc.collect()
            gc.disable()
            try:
                for _ in range(n):
                    await engine.decide(REQUEST)
                await asyncio.sleep(0.05)
                return gc.collect()
            finally:
                gc.enable()
        finally:
            await clients.close()

    return run(main) / n


@pytest.mark.parametrize(("behaviour", "overrides"), [
    (HANG, {"breaker_failures": 0}),  # timed out and cancelled: was ~199 objects per decision
    (status(500), {"breaker_failures": 0, "max_attempts": 3}),  # three failed attempts, retried
    (HANG, {"breaker_failures": 0, "hedge_delay": 0.05}),  # both the request and its hedge cancelled
    (answer("billing"), {}),  # routed
])
def test_no_reference_cycles_per_decision(fake: FakeOpenAI, behaviour: Behaviour, overrides: dict[str, Any]) -> None:
    fake.default = behaviour
    fake.keep_history = False
    assert cycles_per_decision(fake, **overrides) < 1


class Machine:
    """A fake clock and CPU meter for InFlight: time moves only in `simulate`, and every decision answered
    costs `cost` of CPU, so the cost InFlight measures is `cost`."""

    def __init__(self, cost: float) -> None:
        self.now, self.cpu, self.cost = 0.0, 0.0, cost

    def in_flight(self, spread: bool = True) -> InFlight:
        in_flight = InFlight(spread, cpu=lambda: self.cpu, clock=lambda: self.now, contention=lambda: 1.0)
        in_flight.cost = self.cost
        return in_flight


def simulate(machine: Machine, in_flight: InFlight, decisions: list[tuple[float, float, float, float | None]],
             until: float, step: float = 0.001) -> dict[int, float]:
    """Run the schedule from the machine's present until `until`, one `step` at a time. Each decision is
    (arrives, deadline, floor, answered): reserved when it arrives, released when its model answers unless
    it was cut first (then released a step after its cut, its answer written). Returns when each cut
    decision was cut."""
    slots: dict[int, Slot] = {}
    cut: dict[int, float] = {}
    released: set[int] = set()
    answering: list[int] = []
    while machine.now <= until:
        for i in answering:
            machine.cpu += machine.cost
            in_flight.release(slots[i])
            released.add(i)
        answering = []
        for i, (arrives, deadline, floor, answered) in enumerate(decisions):
            if i not in slots and arrives <= machine.now:
                slots[i] = in_flight.reserve(deadline, floor)
            if i in slots and i not in cut and i not in released and answered is not None \
                    and answered <= machine.now:
                machine.cpu += machine.cost
                in_flight.release(slots[i])
                released.add(i)
        index = {id(slot): i for i, slot in slots.items()}
        for slot in in_flight.cut_due(machine.now):
            cut[index[id(slot)]] = machine.now
            answering.append(index[id(slot)])
        machine.now = round(machine.now + step, 9)
    return cut


def wave(start: float, n: int, budget: float = 1.85, answered: float | None = None,
         spacing: float = 0.0) -> list[tuple[float, float, float, float | None]]:
    """`n` decisions arriving `spacing` apart from `start`, due `budget` after arrival, floor half-way;
    answered `answered` after arrival (None: the model hangs)."""
    return [(start + i * spacing, start + i * spacing + budget, start + i * spacing + budget / 2,
             None if answered is None else start + i * spacing + answered) for i in range(n)]


def test_steady_traffic_denser_than_the_cpu_keeps_its_deadlines() -> None:
    """A request every 4 ms, 10 ms of CPU each should they all time out, the model answering in 1.5-1.7 s
    of a 1.85 s deadline: nothing is cut early (reserving slots on arrival cut them down to half the budget).
    Every 25th model never answers: those are cut at their deadline, not before."""
    decisions = []
    for i in range(750):
        arrives = i * 0.004
        answered = None if i % 25 == 0 else arrives + 1.5 + (i % 21) * 0.01
        decisions.append((arrives, arrives + 1.85, arrives + 0.925, answered))
    machine = Machine(cost=0.01)
    in_flight = machine.in_flight()
    cut = simulate(machine, in_flight, decisions, until=5.0)
    assert sorted(cut) == list(range(0, 750, 25))
    assert all(cut[i] == pytest.approx(decisions[i][1], abs=0.0015) for i in cut)
    assert len(in_flight) == 0


def test_a_burst_is_cut_at_its_deadline_until_the_model_evidently_hangs_then_spread() -> None:
    """200 callers at once, the model hanging. The first burst cannot be told from a slow model's (none has
    answered yet), so it is cut at its deadline. Those 200 waited in vain: the next burst is spread one cost
    apart before its deadline, the last at the deadline."""
    machine = Machine(cost=0.002)
    in_flight = machine.in_flight()
    first = simulate(machine, in_flight, wave(0.0, 200), until=2.5)
    assert len(first) == 200 and all(t == pytest.approx(1.85, abs=0.0015) for t in first.values())
    assert in_flight.hangs > 0.9

    second = simulate(machine, in_flight, wave(3.0, 200), until=5.5)
    times = sorted(second.values())
    assert len(times) == 200 and times[-1] == pytest.approx(4.85, abs=0.0015)
    assert times[0] == pytest.approx(4.85 - 199 * 0.002, abs=0.003)
    assert all(b - a >= 0.002 - 0.0011 for a, b in itertools.pairwise(times))  # one cost apart (to the step)
    assert len(in_flight) == 0


def test_answers_from_the_model_stop_the_spreading() -> None:
    """After a hang storm the model answers again: a few answers bring the cuts back to the deadlines."""
    machine = Machine(cost=0.002)
    in_flight = machine.in_flight()
    simulate(machine, in_flight, wave(0.0, 200), until=2.5)  # the model hung: the evidence is there
    assert in_flight.hangs > 0.9
    simulate(machine, in_flight, wave(3.0, 20, answered=0.5), until=4.0)  # back, answering
    assert in_flight.hangs < 0.9
    burst = simulate(machine, in_flight, wave(5.0, 100), until=7.5)
    assert len(burst) == 100 and all(t == pytest.approx(6.85, abs=0.0015) for t in burst.values())


def test_early_cuts_are_no_evidence_that_the_model_hangs() -> None:
    """Cut ahead of its deadline, a decision whose model would have answered shows nothing: were it counted
    as waiting in vain, the spreading would feed itself."""
    machine = Machine(cost=0.003)
    in_flight = machine.in_flight()
    in_flight.hangs = 0.95
    cut = simulate(machine, in_flight, wave(0.0, 100, answered=1.75), until=1.74)
    assert len(cut) > 50 and all(t < 1.75 for t in cut.values())  # spread: cut before their model answered
    assert in_flight.hangs == 0.95


def test_spreading_never_cuts_below_the_floor_and_is_off_for_route_and_eval() -> None:
    machine = Machine(cost=0.004)
    in_flight = machine.in_flight()
    in_flight.hangs = 1.0
    crowded = simulate(machine, in_flight, [(0.0, 10.0, 9.9, None)] * 100, until=10.5)
    assert min(crowded.values()) == pytest.approx(9.9, abs=0.0015)  # the router keeps its share of the budget
    off = InFlight(spread=False)
    off.hangs = 1.0
    for _ in range(10):
        off.reserve(5.0, earliest=1.0)
    assert off.next_cut() == 5.0 and off.cut_due(4.9) == []


def test_the_slot_is_the_cpu_a_decision_costs() -> None:
    cpu, now, contention = [0.0], [0.0], [1.0]
    in_flight = InFlight(cpu=lambda: cpu[0], clock=lambda: now[0], contention=lambda: contention[0])
    slots = [in_flight.reserve(1e9, 0.0) for _ in range(10)]
    for slot in slots[:9]:
        in_flight.release(slot)  # within the sampling second: no new figure yet
    assert in_flight.cost == 0.004
    cpu[0], now[0] = 0.03, 1.5  # 30 ms of CPU for these 10 decisions
    in_flight.release(slots[9])
    assert in_flight.cost == pytest.approx(0.003)
    # a shared machine: three runnable tasks for two cores, so each CPU-second takes 1.5 s
    more = [in_flight.reserve(1e9, 0.0) for _ in range(10)]
    for slot in more[:9]:
        in_flight.release(slot)
    cpu[0], now[0], contention[0] = 0.06, 3.0, 1.5
    in_flight.release(more[9])
    assert in_flight.cost == pytest.approx(0.0045)


def test_a_new_attempt_waits_for_the_decisions_being_cut_asleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """yield_to_due returns once the cut decision is answered, not before (and not by polling)."""
    monkeypatch.setattr(deadlines, "YIELD_LIMIT_S", 60.0)  # only the release may end the wait here

    async def main() -> int:
        in_flight = InFlight()
        slot = in_flight.reserve(time.monotonic() - 1, 0.0)
        assert in_flight.cut_due(time.monotonic()) == [slot]
        waiting = asyncio.create_task(in_flight.yield_to_due())
        for _ in range(20):
            await asyncio.sleep(0)
        assert not waiting.done()
        in_flight.release(slot)
        await asyncio.wait_for(waiting, 5)
        idle = asyncio.create_task(in_flight.yield_to_due())  # nothing due: one turn of the loop
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return int(idle.done())

    assert run(main) == 1


def decide_all(fake: FakeOpenAI, n: int, spacing: float, timeout: float, hangs: float = 0.0) -> list[Decision]:
    """`n` decisions started `spacing` apart against the fake model, on the service's spreading InFlight
    with 10 ms of CPU per decision (the most it assumes), `hangs` the evidence that the model hangs."""
    settings = Settings(openai_base_url=fake.base_url, openai_api_key="k", timeout=timeout,
                        destinations=ROOT / "destinations.json", prompt=ROOT / "prompts/route.md", hedge_delay=0,
                        breaker_failures=0)
    routing = load_routing(settings)

    async def main() -> list[Decision]:
        clients = Clients.from_settings(settings)
        try:
            runtime = Runtime.for_service(settings)
            runtime.in_flight = InFlight(cpu=lambda: time.monotonic() * 100)  # measured: the most, 10 ms
            runtime.in_flight.cost, runtime.in_flight.hangs = 0.01, hangs
            engine = build_engine(settings, routing, clients, runtime)
            await engine.decide(REQUEST)  # warm: pool, compiled prompt

            async def one(i: int) -> Decision:
                await asyncio.sleep(i * spacing)
                return await engine.decide(REQUEST)

            return await asyncio.gather(*(one(i) for i in range(n)))
        finally:
            await clients.close()

    return run(main)


def test_a_model_answering_in_time_is_not_cut_when_requests_outpace_the_cpu(fake: FakeOpenAI) -> None:
    """100 decisions a millisecond apart, 10 ms of CPU each should they time out, the model answering in
    0.5 s of a 0.85 s deadline. Slots reserved on arrival cut ~60 of them at 0.43-0.5 s; now all are routed."""
    fake.default = answer("billing", latency=0.5)
    fake.keep_history = False
    decisions = decide_all(fake, 100, 0.001, timeout=1.0)
    outcomes = Counter(d.outcome for d in decisions)
    assert outcomes["routed"] >= 95, outcomes  # generous: a loaded machine may be late for a few


def test_a_hang_storm_is_spread_ahead_of_its_deadline(fake: FakeOpenAI) -> None:
    """Once the model evidently hangs, 50 decisions due together are cut from ~0.5 s ahead of the deadline
    (0.85 s), one 10 ms slot apart; without that evidence, at the deadline."""
    fake.default = HANG
    fake.keep_history = False
    spread = decide_all(fake, 50, 0.0, timeout=1.0, hangs=1.0)
    assert {d.failure for d in spread} == {"timeout"}
    assert min(d.total_ms for d in spread) < 700
    unproven = decide_all(fake, 50, 0.0, timeout=1.0, hangs=0.0)
    assert {d.failure for d in unproven} == {"timeout"}
    assert min(d.total_ms for d in unproven) >= 849
