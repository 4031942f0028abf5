"""The one small interface both routers sit behind, so the service and evaluation do not care which runs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from app.catalogue.destinations import TRANSFER
from app.vapi.conversation import Conversation


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
class Choice:
    """A router's raw answer. `destination` is only a candidate id until the decision validates it.

    `score` is the router's confidence in [0, 1] when it has one (the offline router's ranking margin, the
    LLM's probability of the id it wrote); `candidate` is its best id before any threshold (the offline
    router answers `none` below its threshold, but evaluation sweeps thresholds over the candidate).
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


class Router(Protocol):
    name: str  # "llm" or "offline"

    @property
    def model(self) -> str | None: ...

    async def choose(self, query: Query, timeout: float, *, retry: Retry | None = None,
                     hedge: bool = False) -> Choice:
        """One attempt, within `timeout` seconds. Raises ModelError on failure. `hedge`: this is the hedged
        second request (the LLM router sends it to the fallback model or server, if one is set)."""
        ...
