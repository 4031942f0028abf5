"""The deadline under load: a timed-out decision leaves nothing for the garbage collector.

Under a hang storm, every timed-out decision used to leave ~200 objects in reference cycles (exceptions
keeping their tracebacks, frames and tenacity's state alive); full collections of 240-580 ms then ran every
few seconds and pushed answers past the deadline. Counted here, not timed: gc.collect() reports what it freed.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Awaitable, Callable

import pytest

from app.engine import Clients, build_engine, load_routing
from app.payload import parse_request
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
