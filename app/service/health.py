"""GET /healthz's answer, at a cost per request that does not grow with the catalogue.

Which entries are open (and when the closed ones open) takes a pass over the whole catalogue: done on every
request, 20 pollers against a 1,000-entry catalogue kept the event loop busy enough that model answers came
late, the breaker opened and every call got the fallback. So the hours are computed at most once a second
(and at once when a reload brings a new catalogue), and the rendered body is kept until something it shows
changes. The decision store's state (kind, connected, rows waiting) is read at the same pace. /healthz needs no
credentials: load balancers and orchestrators call it.

It names the catalogue and the prompt in force (file name, hash, when they were loaded; whether the prompt is
the packaged one), and says "degraded" (still 200: the old files answer) while the last reload failed, naming
the file that failed; the error itself, which quotes the file, is only on the reload_failed log line.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from app import __version__

if TYPE_CHECKING:
    from app.engine import Engine
    from app.service.state import ReloadFailure, State
    from app.store import Store

HOURS_REFRESH = 1.0  # seconds the open/closed state is reused: opening hours have minute granularity
# What /healthz says of a failed reload's error: it quotes the file (a SIP URI's password, say) with its full path,
# and /healthz needs no credentials, so the error itself is only on the log line.
SEE_THE_LOG = "see the reload_failed log line"
STARTING = json.dumps({"status": "starting", "version": __version__}).encode()


class HealthPage:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._engine: Engine | None = None
        self._hours: dict[str, Any] = {}
        self._hours_until = 0.0
        self._key: tuple[Any, ...] | None = None
        self._body = STARTING
        self._store: dict[str, Any] | None = None

    def render(self, engine: Engine | None, breaker: str, store: Store | None = None, *,
               loaded_at: str | None = None, failure: ReloadFailure | None = None) -> tuple[bytes, int]:
        """The body and status: 200 once the engine is built (degraded or not), 503 before. `loaded_at`: when
        the engine's files were read; `failure`: the last reload's, if it failed."""
        if engine is None:
            return STARTING, 503
        now = self.clock()
        if engine is not self._engine or now >= self._hours_until:  # `is`: comparing engines compares catalogues
            self._hours = engine.catalogue.hours_now(dt.datetime.now(dt.UTC))
            self._store = store_state(store)
            self._hours_until = now + HOURS_REFRESH
            self._engine, self._key = engine, None
        described = engine.describe()  # a few fields, some learned as the process runs (output mode, confidence)
        key = (breaker, loaded_at, failure, *described.items())
        if key != self._key:
            body: dict[str, Any] = {"status": "degraded" if failure else "ok", "version": __version__}
            if failure is not None:
                body["reload_failed"] = {"what": failure.what, "file": failure.file, "at": failure.at,
                                         "trigger": failure.trigger, "error": SEE_THE_LOG}
            body.update(files_in_force(engine, loaded_at))
            body.update({**described, "hours": self._hours, "breaker": breaker})
            if self._store is not None:
                body["store"] = self._store
            self._body = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            self._key = key
        return self._body, 200


def files_in_force(engine: Engine, loaded_at: str | None) -> dict[str, dict[str, Any]]:
    """The catalogue and the prompt in force, in one shape: each file by its name alone (no server path: /healthz
    needs no credentials), its hash (as every decision line names it) and when it was read (both at once); and
    whether the prompt is the packaged one (no prompts/route.md of the operator's) or the operator's file."""
    prompt = engine.routing.prompt
    return {"catalogue": {"file": Path(engine.settings.destinations).name, "hash": engine.routing.catalogue_hash,
                          "loaded": loaded_at},
            "prompt": {"name": prompt.name, "file": Path(prompt.path).name, "hash": prompt.hash,
                       "packaged": engine.routing.prompt_packaged, "loaded": loaded_at}}


class Healthz:
    """`Route("/healthz", Healthz(state).handle, methods=["GET"])`: no credentials, for load balancers."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.page = HealthPage()

    async def handle(self, request: Request) -> Response:
        breaker = self.state.runtime.breaker
        state = self.state
        body, status = self.page.render(state.engine, breaker.state if breaker and breaker.enabled else "off",
                                        state.store, loaded_at=state.loaded_at, failure=state.reload_failure)
        return Response(body, status_code=status, media_type="application/json")


def store_state(store: Store | None) -> dict[str, Any] | None:
    """What /healthz says of the decision store: its kind, whether the database answers, rows waiting for it."""
    if store is None:
        return None
    if not store.enabled:
        return {"kind": "none", "connected": False, "buffered": 0}
    stats = store.stats()
    kind = "postgresql" if store.description.startswith("postgres") else "sqlite"
    return {"kind": kind, "connected": stats.connected, "buffered": stats.buffered}
