"""The one small interface every router sits behind, so the service and evaluation do not care which runs.

A router says what it is through its `capabilities` (does it call a model? what does its score mean?); the
decision, engine and service ask those, never its name. Names live only in the registry (app.routers.registry).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from app.catalogue.destinations import TRANSFER, Catalogue
from app.vapi.conversation import Conversation

if TYPE_CHECKING:  # types only: importing the model client or the settings here would slow `--help`
    import openai

    from app.routers.prompt import CompiledPrompt, Prompt
    from app.settings import Settings


@dataclass(frozen=True, slots=True)
class Query:
    """What a router sees: the conversation (turns and rendered text) and the ids allowed for this call.

    `subset` is the calling assistant's set for this kind of request; `allowed` is that set without the
    `unreachable` entries, (id, status) pairs an earlier transfer in this call failed to reach."""

    conversation: Conversation
    text: str
    allowed: tuple[str, ...]
    kind: str = TRANSFER  # transfer or handoff
    unreachable: tuple[tuple[str, str], ...] = ()
    subset: tuple[str, ...] = ()
    at: dt.datetime | None = None  # the decision time, for business hours (None: now)

    @property
    def compiled_key(self) -> tuple[str, ...]:
        """The set the static prompt was rendered for (unchanged by exclusions, so it stays cacheable)."""
        return self.subset or self.allowed


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one model request cost (cached: prompt tokens the provider served from its cache)."""

    prompt: int = 0
    completion: int = 0
    cached: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt + other.prompt, self.completion + other.completion, self.cached + other.cached)


@dataclass(frozen=True, slots=True)
class RunnerUp:
    """One of a router's best-ranked ids, for explaining a decision: its raw score and the words (stems) of the
    conversation that matched it, at most a few."""

    id: str
    score: float
    words: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "score": self.score, "words": list(self.words)}


@dataclass(frozen=True, slots=True)
class Choice:
    """A router's raw answer. `destination` is only a candidate id until the decision validates it.

    `score` is the router's confidence in [0, 1] when it has one (the offline router's ranking margin, the
    LLM's probability of the id it wrote); `candidate` is its best id before any threshold (the offline
    router answers `none` below its threshold, but evaluation sweeps thresholds over the candidate); None: the
    same as `destination`; empty: nothing matched at all, so there is no candidate. `runner_ups`: the router's
    best-ranked ids with their scores and matched words, best first (the offline router's top three).
    `unscored` says why an answer has no score when its router scores them (the LLM's log-probabilities
    were malformed, not finite, or did not spell the answer): a minimum confidence refuses it."""

    destination: str
    score: float | None = None
    reason: str | None = None
    usage: Usage = Usage()
    hedged: bool = False
    model: str | None = None
    cached: bool = False
    candidate: str | None = None
    unscored: str | None = None
    runner_ups: tuple[RunnerUp, ...] = ()


class ModelError(Exception):
    """One failed attempt. `kind` names it for logs and metrics; `retryable` says whether trying again can help;
    `usage` is what the attempt cost, when the server answered at all."""

    def __init__(self, kind: str, detail: str, *, retryable: bool, retry_after: float | None = None,
                 usage: Usage | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.retryable = retryable
        self.retry_after = retry_after
        self.usage = usage or Usage()


class InvalidAnswer(ModelError):
    """The model answered, but not with one of the allowed ids (a number, a refusal, bad JSON, ...).
    `answer` is a short excerpt of what it wrote, to tell it on the retry (never used as a destination)."""

    def __init__(self, detail: str, answer: str | None = None, usage: Usage | None = None) -> None:
        super().__init__("invalid_answer", detail, retryable=True, usage=usage)
        self.answer = answer


@dataclass(frozen=True, slots=True)
class Retry:
    """What the router is told when it tries again after an invalid answer: the same question, with its last
    answer and why it was refused, so a retry at temperature 0 does not just repeat it."""

    answer: str | None
    problem: str


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a router is, as far as the decision, engine, service and evaluation need to know."""

    # It sends requests to a model server: the circuit breaker, hedging, warm-up and model clients apply, and
    # evaluation runs it once per model and prompt (and caches its answers).
    calls_model: bool = False
    # What Choice.score means: "logprobs", the model's probability of its answer; "margin", a ranking margin
    # the router thresholds itself; None, no score.
    scored_by: Literal["logprobs", "margin"] | None = None
    # When it fails, the offline router's confident choice may answer instead (pointless for the offline
    # router itself: it would answer what it just refused to).
    rescuable: bool = True

    @property
    def probability(self) -> bool:
        """Its score is the model's probability of its answer, so SWITCHBOARD_MIN_CONFIDENCE applies to it."""
        return self.scored_by == "logprobs"


class Router(Protocol):
    @property
    def name(self) -> str:
        """Its name in the registry: what decisions, logs, metrics and results call it."""
        ...

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def model(self) -> str | None: ...

    async def choose(self, query: Query, timeout: float, *, retry: Retry | None = None,
                     hedge: bool = False) -> Choice:
        """One attempt, within `timeout` seconds. Raises ModelError on failure. `hedge`: this is the hedged
        second request (the LLM router sends it to the fallback model or server, if one is set)."""
        ...


class ModelClients(Protocol):
    """The model clients a router that calls a model is built with (app.engine.Clients): they outlive a reload."""

    @property
    def primary(self) -> openai.AsyncOpenAI: ...

    @property
    def secondary(self) -> openai.AsyncOpenAI | None: ...

    @property
    def traits(self) -> dict[str, Any]:
        """What each server was seen to refuse, by server (app.routers.llm.ServerTraits)."""
        ...

    @property
    def on_learned(self) -> Callable[[str, str, str], None] | None: ...


@dataclass(frozen=True, slots=True)
class Parts:
    """What a router may be built from; the engine gathers them for each catalogue it loads."""

    settings: Settings
    catalogue: Catalogue
    prompt: Prompt
    compiled: dict[tuple[str, ...], CompiledPrompt]
    clients: ModelClients | None = None  # present whenever the router's capabilities say it calls a model


class RouterClass(Protocol):
    """A router class as the registry sees it: what it is, before one is built, and how to build one."""

    @property
    def capabilities(self) -> Capabilities: ...

    def build(self, parts: Parts, name: str) -> Router:
        """A router of this kind, called `name` (its registry name), for this catalogue and these settings."""
        ...
