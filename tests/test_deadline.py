"""The deadline under load: a timed-out decision leaves nothing for the garbage collector.

Under a hang storm, every timed-out decision used to leave ~200 objects in reference cycles (exceptions
keeping their tracebacks, frames and tenacity's state alive); full collections of 240-580 ms then ran every
few seconds and pushed answers past the deadline. Counted here, not timed: gc.collect() reports what it freed.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import sys
from collections.abc import Awaitable, Callable

import pytest

from app.engine import Clients, build_engine
from app.payload import parse_request
from app.routing import load_routing
from app.settings import Settings
from tests.conftest import ROOT
from tests.fake_openai import HANG, FakeOpenAI, answer, status
from tests.vapi_payloads import transfer_request

REQUEST = parse_request(transfer_request([("user", "I was charged twice")])["message"])


def run(main: Callable[[], Awaitable[int]]) -> int:
    """The service runs on uvloop (uvicorn picks it); the stdlib loop's own transports hold a cycle each."""
    if sys.platform == "win32":
        return asyncio.run(main())  # type: ignore[arg-type]
    import uvloop

    return uvloop.run(main())  # type: ignore[no-any-return]


def cycles_per_decision(fake: FakeOpenAI, n: int = 20, **overrides: object) -> float:
    values: dict[str, object] = {"openai_base_url": fake.base_url, "openai_api_key": "k", "timeout": 0.3,
                                 "destinations": ROOT / "destinations.json", "prompt": ROOT / "prompts/route.md",
                                 "hedge_delay": 0, **overrides}
    settings = Settings(**values)  # type: ignore[arg-type]
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
def test_no_reference_cycles_per_decision(fake, behaviour, overrides):
    fake.default = behaviour
    fake.keep_history = False
    assert cycles_per_decision(fake, **overrides) < 1


def test_a_burst_of_equal_deadlines_is_spread_out_before_them():
    """200 decisions due at the same instant each get a slot of `cost` seconds, all before the deadline."""
    from app.decision import InFlight

    in_flight = InFlight()
    in_flight.cost = 0.004
    ends = [in_flight.reserve(100.0, earliest=99.0) for _ in range(200)]
    assert max(ends) == 100.0 and len(set(ends)) == 200
    gaps = sorted(ends)
    assert all(b - a >= 0.004 - 1e-9 for a, b in itertools.pairwise(gaps))
    assert min(ends) == pytest.approx(100.0 - 199 * 0.004)
    for end in ends:
        in_flight.release(end)
    assert len(in_flight) == 0


def test_spreading_never_takes_more_than_allowed_and_leaves_steady_traffic_alone():
    from app.decision import InFlight

    in_flight = InFlight()
    in_flight.cost = 0.004
    assert [in_flight.reserve(10.0 + i * 0.01, earliest=0.0) for i in range(50)] == [10.0 + i * 0.01
                                                                                    for i in range(50)]
    crowded = [in_flight.reserve(20.0, earliest=19.9) for _ in range(100)]
    assert min(crowded) == 19.9  # the floor: the router keeps at least its share of the budget
    off = InFlight(spread=False)
    assert [off.reserve(5.0, earliest=1.0) for _ in range(10)] == [5.0] * 10


def test_the_slot_is_the_cpu_a_decision_costs():
    from app.decision import InFlight

    cpu, now, contention = [0.0], [0.0], [1.0]
    in_flight = InFlight(cpu=lambda: cpu[0], clock=lambda: now[0], contention=lambda: contention[0])
    ends = [in_flight.reserve(1e9, 0.0) for _ in range(10)]
    for end in ends[:9]:
        in_flight.release(end)  # within the sampling second: no new figure yet
    assert in_flight.cost == 0.004
    cpu[0], now[0] = 0.03, 1.5  # 30 ms of CPU for these 10 decisions
    in_flight.release(ends[9])
    assert in_flight.cost == pytest.approx(0.003)
    # a shared machine: three runnable tasks for two cores, so each CPU-second takes 1.5 s
    more = [in_flight.reserve(1e9, 0.0) for _ in range(10)]
    for end in more[:9]:
        in_flight.release(end)
    cpu[0], now[0], contention[0] = 0.06, 3.0, 1.5
    in_flight.release(more[9])
    assert in_flight.cost == pytest.approx(0.0045)
