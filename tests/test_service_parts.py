"""The service's parts, each built and exercised alone, without create_app: the webhook handler, the health and
metrics pages, the lifespan. (They were closures inside create_app, which nothing could import or test alone.)"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from app.dataset.recording import Recorder
from app.engine import Runtime, build_engine
from app.loading import Routing, load_routing
from app.service.auth import Authenticator
from app.service.health import Healthz
from app.service.lifespan import Lifespan
from app.service.metrics import MetricsPage
from app.service.state import State
from app.service.webhook import Webhook
from app.settings import Settings
from tests.conftest import ROOT, assert_valid_answer
from tests.fake_openai import ServerThread
from tests.vapi_payloads import transfer_request

BILLING = [("bot", "Brightline, how can I help?"), ("user", "I was charged twice on my bill this month.")]


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"destinations": ROOT / "destinations.json", "prompt": ROOT / "prompts/route.md",
                              "router": "offline", "reload_interval": 0, "hedge_delay": 0}
    return Settings(**{**values, **overrides})


def built(config: Settings) -> tuple[State, Routing]:
    """A State with an engine, as the lifespan leaves it, made without the lifespan."""
    state = State(config)
    state.runtime = Runtime.for_service(config)
    routing = load_routing(config)
    state.engine = build_engine(config, routing, None, state.runtime)
    return state, routing


class Served:
    """One part's routes on loopback, over real HTTP."""

    def __init__(self, *routes: Route) -> None:
        self.thread = ServerThread(Starlette(routes=list(routes)))
        self.thread.start()
        self.client = httpx2.Client(base_url=self.thread.url, timeout=10)

    def close(self) -> None:
        self.client.close()
        self.thread.stop()


@pytest.fixture
def serve():
    started: list[Served] = []

    def start(*routes: Route) -> Served:
        started.append(Served(*routes))
        return started[-1]

    yield start
    for served in started:
        served.close()


def test_the_webhook_handler_answers_alone(serve, tmp_path, log_records):
    config = settings(secret="s3cret", record_dir=tmp_path / "rec")
    state, _ = built(config)
    recorder = Recorder(tmp_path / "rec", registry=state.metrics.registry)
    webhook = Webhook(state, Authenticator.from_settings(config), recorder)
    served = serve(Route("/webhook", webhook.handle, methods=["POST"]))
    post = served.client.post

    body = json.dumps(transfer_request(BILLING))
    refused = post("/webhook", content=body, headers={"content-type": "application/json"})
    assert refused.status_code == 401 and refused.headers["connection"] == "close"  # before the body was read
    headers = {"content-type": "application/json", "x-vapi-secret": "s3cret", "x-request-id": "rid-1"}
    answered = post("/webhook", content=body, headers=headers)
    assert answered.status_code == 200 and answered.headers["x-request-id"] == "rid-1"
    assert_valid_answer(answered.json())
    assert answered.json()["destination"]["number"] == "+14155550142"
    assert post("/webhook", content=b'{"message": {"type": "status-update"}}', headers=headers).json() == {}
    bad = post("/webhook", content=b"{nope", headers=headers)
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]
    wrong_type = post("/webhook", content=body, headers={**headers, "content-type": "text/plain"})
    assert wrong_type.status_code == 415

    requests = {(s.labels["type"], s.labels["status"]): s.value for m in state.metrics.requests.collect()
                for s in m.samples if s.name.endswith("_total")}
    assert requests == {("invalid", "401"): 1, ("transfer-destination-request", "200"): 1,
                        ("status-update", "200"): 1, ("invalid", "400"): 1, ("invalid", "415"): 1}
    decisions = [r for r in log_records if r.getMessage() == "decision"]
    assert len(decisions) == 1 and decisions[0].fields["chosen"] == "billing"  # type: ignore[attr-defined]
    recorder.close()
    assert json.loads(recorder.path.read_text())["decision"]["chosen"] == "billing"


def test_the_health_page_alone(serve):
    state, _ = built(settings(breaker_failures=0))
    engine, state.engine = state.engine, None
    served = serve(Route("/healthz", Healthz(state).handle, methods=["GET"]))
    starting = served.client.get("/healthz")
    assert starting.status_code == 503 and starting.json()["status"] == "starting"
    state.engine = engine  # as the lifespan does once it has built one
    ready = served.client.get("/healthz")
    assert ready.status_code == 200 and ready.json()["destinations"] == 9 and ready.json()["breaker"] == "off"


def test_the_metrics_page_alone(serve):
    from app.decision.breaker import CircuitBreaker

    config = settings(metrics_token="m-token")
    state, _ = built(config)
    clock = [0.0]
    breaker = CircuitBreaker(1, 10.0, clock=lambda: clock[0])
    served = serve(Route("/metrics", MetricsPage(state.metrics, config, breaker).handle, methods=["GET"]))
    refused = served.client.get("/metrics")
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    breaker.record(False)
    clock[0] = 11.0  # open -> half-open happens with time: the page says so when it is asked
    page = served.client.get("/metrics", headers={"authorization": "Bearer m-token"})
    assert page.status_code == 200 and "switchboard_breaker_state 1.0" in page.text


def test_the_lifespan_alone(log_records):
    """Builds the engine and says how it is set up on the way in; on the way out, stops watching and writes what
    recording queued."""
    config = settings(reload_interval=30)
    state = State(config)
    routing = load_routing(config)
    closed: list[bool] = []

    class Queued:
        def close(self) -> None:
            closed.append(True)

    async def live() -> None:
        lifespan = Lifespan(state, routing, auth_enabled=False, recorder=Queued())  # type: ignore[arg-type]
        async with lifespan(Starlette()):
            assert state.engine is not None and state.engine.routing is routing
            assert any(t.get_coro().__qualname__ == "Reloads.watch" for t in asyncio.all_tasks())  # type: ignore[union-attr]
        await asyncio.sleep(0)
        assert not any(t.get_coro().__qualname__ == "Reloads.watch" and not t.done()  # type: ignore[union-attr]
                       for t in asyncio.all_tasks())

    asyncio.run(live())
    assert closed == [True]
    names = [r.getMessage() for r in log_records]
    assert names[:2] == ["started", "no_secret"]
    started = log_records[0].fields  # type: ignore[attr-defined]
    assert started["router"] == "offline" and started["auth"] == "none" and started["destinations"] == 9
    assert log_records[1].levelno == logging.WARNING
