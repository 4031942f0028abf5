"""Routers declare what they are; the registry is the only place their names mean anything.

A router's identity used to be a string: the decision compared `router.name` with "llm" and "offline" for the
circuit breaker, hedging, the minimum confidence and the offline rescue, the evaluation cache called itself
"llm" to be treated the same, and a third router would have touched about eight files. Here a third router is
added through the registry alone, and the decision treats it by what it declares."""

from __future__ import annotations

import ast
import asyncio
import json
import subprocess
import sys
import typing
from pathlib import Path
from typing import ClassVar

import click
import pytest

from app.decision.breaker import CircuitBreaker
from app.engine import Clients, Runtime, build_engine
from app.evaluation.cache import AnswerCache, CachingRouter, caching
from app.loading import ConfigError, load_routing
from app.routers import ROUTERS, Capabilities, Parts, RouterSpec, UnknownRouter, spec_for
from app.routers.base import Choice, ModelError, Query, Retry
from app.settings import Settings
from app.vapi.messages import DestinationRequest, parse_json, parse_request
from tests.conftest import ROOT
from tests.vapi_payloads import transfer_request

TURNS = [("user", "Hi, can I talk to billing? I was charged twice this month.")]


def request(turns: list[tuple[str, str]] = TURNS) -> DestinationRequest:
    return parse_request(parse_json(json.dumps(transfer_request(turns)).encode()))


def settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"router": "offline", "destinations": ROOT / "destinations.json",
                                 "prompt": ROOT / "prompts/route.md", "timeout": 2.0, **overrides}
    return Settings(**values)


class Toy:
    """A third router: the first allowed id the caller named, else `none`; or a scripted failure. What it is
    (its capabilities) is set per test, on a subclass."""

    capabilities: ClassVar[Capabilities] = Capabilities()
    score: ClassVar[float | None] = None
    fails: ClassVar[bool] = False

    def __init__(self, name: str, allowed: tuple[str, ...]) -> None:
        self.name, self.ids, self.calls = name, allowed, 0

    @classmethod
    def build(cls, parts: Parts, name: str) -> Toy:
        return cls(name, parts.catalogue.ids)

    @property
    def model(self) -> str | None:
        return None

    async def choose(self, query: Query, timeout: float, *, retry: Retry | None = None,
                     hedge: bool = False) -> Choice:
        self.calls += 1
        if self.fails:
            raise ModelError("server_error", "HTTP 500", retryable=False)
        named = next((i for i in query.allowed if i in query.text.lower()), "none")
        return Choice(destination=named, score=self.score)


def register(monkeypatch: pytest.MonkeyPatch, cls: type[Toy], name: str = "toy") -> None:
    """The whole of adding a router: its class, and one entry in the registry."""
    monkeypatch.setitem(ROUTERS, name, RouterSpec(name, "a toy for tests", lambda: cls))


def test_a_third_router_is_added_through_the_registry_alone(monkeypatch):
    register(monkeypatch, Toy)
    s = settings()
    engine = build_engine(s, load_routing(s), None, router_name="toy")
    decision = asyncio.run(engine.decide(request()))
    assert (decision.router, decision.outcome, decision.chosen) == ("toy", "routed", "billing")
    assert decision.body["destination"]["number"] == "+14155550142"  # the catalogue's billing number
    assert engine.describe()["router"] == "toy" and engine.router is engine.decider.router
    assert spec_for("toy").capabilities == Capabilities()


def test_a_router_that_calls_a_model_gets_the_breaker_and_the_offline_rescue(monkeypatch):
    class Failing(Toy):
        capabilities = Capabilities(calls_model=True)
        fails = True

    register(monkeypatch, Failing)
    s = settings(on_llm_failure="offline", openai_base_url="http://127.0.0.1:9/v1", openai_api_key="k")
    routing = load_routing(s)
    with pytest.raises(ConfigError, match="toy router calls a model"):
        build_engine(s, routing, None, router_name="toy")
    breaker = CircuitBreaker(2, 60.0)
    engine = build_engine(s, routing, Clients.from_settings(s), Runtime(breaker=breaker), router_name="toy")
    decisions = [asyncio.run(engine.decide(request())) for _ in range(3)]
    # Each failure is rescued by the offline router's confident choice; two failures open the breaker, so the
    # third is answered without calling the router at all.
    assert [(d.outcome, d.rescued_by, d.chosen) for d in decisions] == [("fallback", "offline", "billing")] * 3
    assert [d.failure for d in decisions] == ["server_error", "server_error", "breaker_open"]
    assert breaker.state == "open"
    router = engine.router
    assert isinstance(router, Failing) and router.calls == 2


def test_a_router_that_calls_no_model_is_never_stopped_by_the_breaker(monkeypatch):
    class Failing(Toy):
        fails = True

    register(monkeypatch, Failing)
    s = settings()
    breaker = CircuitBreaker(1, 60.0)
    engine = build_engine(s, load_routing(s), None, Runtime(breaker=breaker), router_name="toy")
    decisions = [asyncio.run(engine.decide(request())) for _ in range(3)]
    assert [d.failure for d in decisions] == ["server_error"] * 3 and breaker.state == "closed"


@pytest.mark.parametrize(("scored_by", "outcome"), [("logprobs", "low_confidence"), ("margin", "routed"),
                                                     (None, "routed")])
def test_the_minimum_confidence_applies_to_routers_whose_score_is_a_probability(monkeypatch, scored_by, outcome):
    class Unsure(Toy):
        capabilities = Capabilities(scored_by=scored_by)
        score = 0.2

    register(monkeypatch, Unsure)
    s = settings(min_confidence=0.5)
    engine = build_engine(s, load_routing(s), None, router_name="toy")
    decision = asyncio.run(engine.decide(request()))
    assert decision.failure == (outcome if outcome != "routed" else None)
    assert decision.outcome == ("fallback" if outcome == "low_confidence" else outcome)  # the catalogue's


def test_a_router_that_is_not_rescuable_is_not_rescued_by_the_offline_router(monkeypatch):
    class Failing(Toy):
        capabilities = Capabilities(rescuable=False)
        fails = True

    register(monkeypatch, Failing)
    s = settings(on_llm_failure="offline")
    engine = build_engine(s, load_routing(s), None, router_name="toy")
    decision = asyncio.run(engine.decide(request()))
    # Straight to the catalogue's fallback: the offline router is not asked again.
    assert (decision.failure, decision.rescued_by, decision.chosen) == ("server_error", "fallback", None)


def test_the_shipped_routers_declare_what_they_are():
    llm, offline = spec_for("llm").capabilities, spec_for("offline").capabilities
    assert llm.calls_model and llm.probability and llm.rescuable
    assert not offline.calls_model and not offline.probability and not offline.rescuable
    with pytest.raises(UnknownRouter, match="choose one of: llm, offline"):
        spec_for("oracle")


def test_settings_and_the_commands_offer_the_registry_names():
    """settings.py imports nothing from app, so it keeps its own list: it must be the registry's."""
    from app.cli.eval import eval_command
    from app.cli.route import route

    assert set(typing.get_args(Settings.model_fields["router"].annotation)) == {"auto", *ROUTERS}
    for command in (route, eval_command):
        option = next(p for p in command.params if p.name in ("router", "routers"))
        assert isinstance(option.type, click.Choice) and list(option.type.choices) == list(ROUTERS)


def test_an_unknown_router_name_is_a_config_error_naming_the_choices():
    s = settings()
    with pytest.raises(ConfigError, match="no router called 'oracle'; choose one of: llm, offline"):
        build_engine(s, load_routing(s), None, router_name="oracle")


def test_the_evaluation_cache_is_the_router_it_wraps_to_the_decision(tmp_path: Path):
    """Built into the engine (not swapped into the decider afterwards), and treated as the LLM router it wraps:
    a cached answer less sure than the minimum confidence is not routed."""
    s = settings(router="llm", openai_base_url="http://127.0.0.1:9/v1", openai_api_key="k", min_confidence=0.5)
    cache = AnswerCache(tmp_path / "answers.sqlite")
    try:
        engine = build_engine(s, load_routing(s), Clients.from_settings(s), wrap=caching(cache))
        router = engine.router
        assert isinstance(router, CachingRouter) and engine.decider.router is router
        assert (router.name, router.capabilities) == ("llm", spec_for("llm").capabilities)
        query = engine.query(request())
        cache.put(router.key(query), Choice(destination="billing", score=0.3))  # no model server is asked
        decision = asyncio.run(engine.decide(request()))
        assert (decision.cached, decision.router, decision.failure) == (True, "llm", "low_confidence")
    finally:
        cache.close()


def test_the_evaluation_cache_leaves_other_routers_as_they_are(tmp_path: Path):
    s = settings()
    cache = AnswerCache(tmp_path / "answers.sqlite")
    try:
        engine = build_engine(s, load_routing(s), None, wrap=caching(cache))
        assert engine.router is engine.offline and engine.offline.name == "offline"
    finally:
        cache.close()


def test_no_code_outside_the_registry_compares_router_names():
    """`x == "llm"` anywhere but the registry and settings' choice list is a router asked for its name. The
    one allowed: SWITCHBOARD_ON_LLM_FAILURE's value `offline`, a failure policy."""
    found = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        if path.relative_to(ROOT).as_posix() in ("app/routers/registry.py", "app/settings.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            if any(isinstance(side, ast.Attribute) and side.attr == "on_failure" for side in sides):
                continue
            names = [c.value for side in sides for c in ast.walk(side)
                     if isinstance(c, ast.Constant) and c.value in ROUTERS]
            if names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def test_listing_the_router_names_loads_no_model_client():
    """The registry imports a router's module only to build one or to read its capabilities."""
    code = ("import sys, app.cli; from click.testing import CliRunner; "
            "r = CliRunner().invoke(app.cli.cli, ['route', '--help']); assert 'llm' in r.output, r.output; "
            "print('openai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
