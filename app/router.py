"""The one small interface both routers sit behind, so the service and evaluation do not care which runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .catalogue import TRANSFER
from .conversation import Conversation


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

    @property
    def compiled_key(self) -> tuple[str, ...]:
        """The set the static prompt was rendered for (unchanged by exclusions, so it stays cacheable)."""
        return self.subset or self.allowed


@dataclass(frozen=True, slots=True)
class Choice:
    """A router's raw answer. `destination` is only a candidate id until the decision validates it."""

    destination: str
    score: float | None = None
    reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    hedged: bool = False
    model: str | None = None
    cached: bool = False


class ModelError(Exception):
    """One failed attempt. `kind` names it for logs and metrics; `retryable` says whether trying again can help."""

    def __init__(self, kind: str, detail: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.retryable = retryable
        self.retry_after = retry_after


class InvalidAnswer(ModelError):
    """The model answered, but not with one of the allowed ids (a number, a refusal, bad JSON, ...)."""

    def __init__(self, detail: str) -> None:
        super().__init__("invalid_answer", detail, retryable=True)


class Router(Protocol):
    name: str  # "llm" or "offline"

    @property
    def model(self) -> str | None: ...

    async def choose(self, query: Query, timeout: float) -> Choice:
        """One attempt, within `timeout` seconds. Raises ModelError on failure."""
        ...
