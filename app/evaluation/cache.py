"""On-disk cache of model answers for evaluation, keyed by everything that affects them.

Model, endpoint, prompt hash and settings, output mode, the allowed ids, the rendered conversation and
hint, and the repeat index (so `--repeat` still asks afresh). Only successful answers are stored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.routers.base import Capabilities, Choice, Query, Retry, Router, Usage
from app.routers.llm import LLMRouter


class AnswerCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, choice TEXT NOT NULL)")

    def get(self, key: str) -> Choice | None:
        row = self.db.execute("SELECT choice FROM answers WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        fields = json.loads(row[0])
        try:
            fields["usage"] = Usage(**fields.get("usage", {}))
            return dataclasses.replace(Choice(**fields), cached=True)
        except TypeError:
            return None  # written by an older version: ask again

    def put(self, key: str, choice: Choice) -> None:
        self.db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?)", (key, json.dumps(dataclasses.asdict(choice))))
        self.db.commit()

    def close(self) -> None:
        self.db.close()


@dataclass
class CachingRouter:
    """The LLM router, answering from the cache when it can. It is the router it wraps as far as anyone asks
    (name, capabilities, model), so the decision treats it the same: breaker, hedging, minimum confidence."""

    inner: LLMRouter
    cache: AnswerCache
    repeat_index: int = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    @property
    def model(self) -> str:
        return self.inner.model

    def key(self, query: Query, retry: Retry | None = None, hedge: bool = False) -> str:
        header = self.inner.prompt.header
        parts = {
            "model": self.inner.primary.model, "base_url": str(self.inner.primary.client.base_url),
            "prompt": self.inner.prompt.hash, "mode": self.inner.mode, "temperature": header.temperature,
            "max_tokens": header.max_tokens, "allowed": query.allowed, "conversation": query.text,
            "hint": query.conversation.hint, "repeat": self.repeat_index, "unreachable": query.unreachable,
            "retry": [retry.answer, retry.problem] if retry else None,
            # a hedge goes to the fallback model or server: its answer is not the primary's
            "hedge": [self.inner.secondary.model, str(self.inner.secondary.client.base_url)]
            if hedge and self.inner.secondary is not None else hedge,
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    async def choose(self, query: Query, timeout: float, *, retry: Retry | None = None,
                     hedge: bool = False) -> Choice:
        key = self.key(query, retry, hedge)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        choice = await self.inner.choose(query, timeout, retry=retry, hedge=hedge)
        self.cache.put(key, choice)
        return choice


def caching(cache: AnswerCache, repeat_index: int = 0) -> Callable[[Router], Router]:
    """What app.engine.build_engine wraps its router in for evaluation: the LLM router answers from the cache
    (its key is made of the LLM router's request); any other router is left as it is."""

    def wrap(router: Router) -> Router:
        return CachingRouter(router, cache, repeat_index) if isinstance(router, LLMRouter) else router

    return wrap
