"""Builds the routing engine from settings: catalogue, prompt, routers and the decider, ready to use.

The service, `switchboard route` and `switchboard eval` all build it here, so they run the same code.
Files are read here (start-up, reload); nothing is read per request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from app.catalogue.destinations import HANDOFF, TRANSFER, Catalogue
from app.catalogue.hours import moment
from app.decision.breaker import CircuitBreaker
from app.decision.deadlines import InFlight
from app.decision.decider import Decider, Decision
from app.decision.hedging import Hedging
from app.loading import ConfigError, Routing
from app.routers.base import Parts, Query, Router
from app.routers.llm import LLMRouter, ServerTraits
from app.routers.offline import OfflineRouter
from app.routers.registry import UnknownRouter, build_routers, spec_for
from app.settings import Settings
from app.vapi.conversation import extract, render
from app.vapi.messages import DestinationRequest
from app.vapi.transfers import unreachable


def make_client(settings: Settings, base_url: str | None = None) -> openai.AsyncOpenAI:
    """One client for the app's lifetime. The SDK's own retries are off: the decider owns the retry policy."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    url = base_url or settings.openai_base_url
    if key is None and url is None:
        raise ConfigError("The LLM router needs OPENAI_API_KEY (OpenAI) or OPENAI_BASE_URL (any "
                          "OpenAI-compatible server); or set SWITCHBOARD_ROUTER=offline.")
    # aiohttp's pool does not re-check every idle connection on each request as httpcore's does, which
    # measured at about twice the requests per second at concurrency 50 (bench/run.py).
    http_client = openai.DefaultAioHttpClient(timeout=settings.timeout) if settings.http_client == "aiohttp" else None
    # Local servers (vLLM, Ollama, llama.cpp) take any key; the client insists on one.
    return openai.AsyncOpenAI(api_key=key or "unused", base_url=url, max_retries=0, timeout=settings.timeout,
                              http_client=http_client)


@dataclass
class Clients:
    """The model clients, and what was learned about their servers: both outlive a reload."""

    primary: openai.AsyncOpenAI
    secondary: openai.AsyncOpenAI | None = None
    # What each server was seen to refuse (output modes, log-probabilities, length keywords). Kept here so a
    # reload does not send every server its refused requests again.
    traits: dict[str, ServerTraits] = field(default_factory=dict)
    on_learned: Callable[[str, str, str], None] | None = None  # told when a server's traits change

    @classmethod
    def from_settings(cls, settings: Settings) -> Clients:
        secondary = make_client(settings, settings.fallback_base_url) if settings.fallback_base_url else None
        return cls(make_client(settings), secondary)

    async def close(self) -> None:
        await self.primary.close()
        if self.secondary is not None:
            await self.secondary.close()


@dataclass
class Runtime:
    """What belongs to the process rather than to one catalogue, so a reload keeps it: the circuit breaker,
    the deadlines of the decisions in flight, the hedging statistics."""

    breaker: CircuitBreaker | None = None
    in_flight: InFlight = field(default_factory=lambda: InFlight(spread=False))
    hedging: Hedging | None = None

    @classmethod
    def for_service(cls, settings: Settings, breaker: CircuitBreaker | None = None) -> Runtime:
        """The service's: deadlines spread apart under bursts (`route` and `eval` keep them as they are)."""
        return cls(breaker, InFlight(spread=True), Hedging(settings.hedge_delay, settings.hedge_max_share))


@dataclass
class Engine:
    settings: Settings
    routing: Routing
    router: Router
    offline: OfflineRouter
    decider: Decider
    why: str
    at: dt.datetime | None = None  # decide as of this moment, whatever the request says (route --at)

    @property
    def catalogue(self) -> Catalogue:
        return self.routing.catalogue

    def query(self, request: DestinationRequest) -> Query:
        """Raises NoConversation when the request has no caller words."""
        conversation = extract(request, include_system_prompt=self.settings.include_system_prompt,
                               budget_chars=self.settings.conversation_chars)
        kind = HANDOFF if request.is_handoff else TRANSFER
        subset = self.catalogue.allowed_for(*request.assistant_keys, kind=kind)
        gone = unreachable(request, self.catalogue, subset, kind)
        left_out = {entry_id for entry_id, _ in gone}
        allowed = tuple(i for i in subset if i not in left_out) if gone else subset
        return Query(conversation, render(conversation), allowed, kind, gone, subset,
                     self.at or moment(request.timestamp))

    async def decide(self, request: DestinationRequest, started: float | None = None) -> Decision:
        return await self.decider.decide(self.query(request), started)

    def files(self) -> dict[str, Any]:
        """The catalogue and prompt in force, as the started and reloaded log lines name them: flat, as every
        decision line names them (catalogue_hash, prompt, prompt_hash), each file by its full path (the prompt's:
        the operator's, or the packaged one it fell back to). /healthz shows only the files' names."""
        prompt = self.routing.prompt
        return {"catalogue_file": str(Path(self.settings.destinations).absolute()),
                "catalogue_hash": self.routing.catalogue_hash, "prompt": prompt.name,
                "prompt_file": str(Path(prompt.path).absolute()), "prompt_hash": prompt.hash}

    def describe(self) -> dict[str, Any]:
        """The router and what it learned of its model server, and the catalogue's size (/healthz, log lines)."""
        out: dict[str, Any] = {"router": self.router.name, "why": self.why, "model": self.router.model,
                               "destinations": len(self.catalogue.entries)}
        if isinstance(self.router, LLMRouter):
            out["output_mode"] = self.router.mode
            out["confidence"] = confidence_state(self.router.logprobs, self.settings.min_confidence)
        return out


def confidence_state(logprobs: str, minimum: float) -> str:
    """What /healthz and the start-up line say about the LLM's confidence and SWITCHBOARD_MIN_CONFIDENCE."""
    applies = f"SWITCHBOARD_MIN_CONFIDENCE={minimum:g} applies" if minimum > 0 else "no minimum set"
    return {
        "unknown": f"not known until the first model call ({applies} if the server gives log-probabilities)",
        "given": f"from the model's log-probabilities; {applies}",
        "refused": "unavailable: the server refused log-probabilities" + (
            f"; SWITCHBOARD_MIN_CONFIDENCE={minimum:g} cannot apply" if minimum > 0 else ""),
        "absent": "unavailable: the server gives no log-probabilities" + (
            f"; SWITCHBOARD_MIN_CONFIDENCE={minimum:g} cannot apply" if minimum > 0 else ""),
    }[logprobs]


def build_engine(settings: Settings, routing: Routing, clients: Clients | None,
                 runtime: Runtime | None = None, router_name: str | None = None,
                 wrap: Callable[[Router], Router] | None = None) -> Engine:
    """`runtime` belongs to the process, not to one catalogue: pass the same one on reload. `router_name`: a
    name in the registry (app.routers.registry), else the settings choose. `wrap`: what decides with the
    router built here instead of it (evaluation's answer cache), so the engine and its decider use one router."""
    runtime = runtime or Runtime(hedging=Hedging(settings.hedge_delay, settings.hedge_max_share))
    name, why = (router_name, f"--router {router_name}") if router_name else settings.router_choice()
    try:
        spec = spec_for(name)
    except UnknownRouter as exc:
        raise ConfigError(str(exc)) from None
    if spec.capabilities.calls_model and clients is None:
        raise ConfigError(f"The {spec.name} router calls a model and needs a client for it: set OPENAI_API_KEY or "
                          "OPENAI_BASE_URL.")
    router, offline = build_routers(spec.name, Parts(settings, routing.catalogue, routing.prompt, routing.compiled,
                                                     clients))
    if wrap is not None:
        router = wrap(router)
    decider = Decider(routing.catalogue, router, settings.timeout, settings.max_attempts, settings.on_llm_failure,
                      offline, runtime.breaker, runtime.in_flight, runtime.hedging, settings.min_confidence)
    return Engine(settings, routing, router, offline, decider, why)
