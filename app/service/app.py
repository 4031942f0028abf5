"""The HTTP app: `POST /webhook` for Vapi, `GET /healthz`, `GET /metrics`.

The handler reads like the product: check who sent it (from the headers, before reading anything), read
the body, parse, extract the conversation, decide, answer. Files are read and the model client is opened in
the lifespan, never per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app import __version__
from app.catalogue.destinations import CatalogueError
from app.dataset.recording import Recorder, RecordingError
from app.decision.breaker import CircuitBreaker
from app.decision.decider import Decision
from app.engine import Clients, Engine, Runtime, build_engine, confidence_state
from app.loading import ConfigError, Routing, load_routing, startup_checks
from app.logs import LOGGER, event, request_id
from app.routers.prompt import PromptError
from app.routers.registry import spec_for
from app.service.auth import METRICS_REFUSED, Authenticator, AuthError, metrics_allowed
from app.service.health import HealthPage
from app.service.metrics import Metrics
from app.service.server import ARRIVED
from app.settings import Settings
from app.vapi.conversation import NoConversation
from app.vapi.messages import (
    DESTINATION_REQUESTS,
    DestinationRequest,
    PayloadError,
    parse_json,
    parse_request,
    type_label,
)

JSON_TYPES = ("application/json", "text/json")
MAX_LENGTH_DIGITS = 12  # a Content-Length longer than this is not a number we would read


@dataclass
class State:
    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    runtime: Runtime = field(default_factory=Runtime)
    clients: Clients | None = None
    engine: Engine | None = None
    stamps: tuple[float, float] = (0.0, 0.0)


def create_app(settings: Settings, routing: Routing | None = None) -> Starlette:
    """Build the service. Raises CatalogueError, PromptError or ConfigError before serving anything."""
    logger = logging.getLogger(LOGGER)
    routing = routing or startup_checks(settings)
    calls_model = spec_for(settings.router_choice()[0]).capabilities.calls_model  # clients, warm-up
    state = State(settings)

    def breaker_changed(old: str, new: str) -> None:
        state.metrics.breaker_changed(new)
        event(logger, "breaker", logging.WARNING if new == "open" else logging.INFO, **{"from": old, "to": new})

    state.runtime = Runtime.for_service(settings, CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown,
                                                                 on_change=breaker_changed))
    state.stamps = _stamps(settings)
    auth = Authenticator.from_settings(settings)
    try:
        recorder = Recorder(settings.record_dir, settings.record_redact, registry=state.metrics.registry) \
            if settings.record_dir else None
    except RecordingError as exc:
        raise ConfigError(str(exc)) from None

    def learned(server: str, what: str, value: str) -> None:
        event(logger, "model_server", logging.INFO if value in ("given", "True") else logging.WARNING,
              server=server, **{what: value}, **({"confidence": confidence_state(value, settings.min_confidence)}
                                                 if what == "logprobs" else {}))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.clients = Clients.from_settings(settings) if calls_model else None
        if state.clients is not None:
            state.clients.on_learned = learned
        state.engine = build_engine(settings, routing, state.clients, state.runtime)
        event(logger, "started", **state.engine.describe(), auth=_auth_mode(settings), version=__version__)
        if not auth.enabled:
            event(logger, "no_secret", logging.WARNING,
                  hint="anyone who can reach this URL can ask for transfers; set SWITCHBOARD_SECRET")
        if settings.warmup and calls_model:
            await _warm_up(state.engine, logger)
        tasks = []
        reloads = Reloads(state, logger)
        if settings.reload_interval > 0:
            tasks.append(asyncio.create_task(_watch(state, logger, reloads)))
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # not the main thread
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, lambda: reloads.request("SIGHUP"))
        # Everything built so far lives as long as the process: move it out of the collector's way, so a full
        # collection under load walks only what requests create (it took 240-580 ms before).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            if reloads.task is not None:
                reloads.task.cancel()
            if recorder is not None:
                await asyncio.to_thread(recorder.close)  # what is queued is written before the process ends
            if state.clients is not None:
                await state.clients.close()
            state.metrics.process_exited()

    async def webhook(request: Request) -> Response:
        started = _arrived(request)
        token = request_id.set(request.headers.get("x-request-id", "")[:64] or uuid.uuid4().hex[:16])
        kind = "invalid"
        body_read = False
        try:
            authenticated = auth.precheck(request.headers)  # before reading a byte of the body
            _check_content_type(request)
            body = await _read_body(request, settings.max_body_bytes, settings.read_timeout)
            body_read = True
            if not authenticated:
                auth.check(request.headers, body, request.method, str(request.url))
            message = parse_json(body)
            kind = type_label(str(message["type"]))
            if kind not in DESTINATION_REQUESTS:
                return _reply(state, kind, 200, {})  # other server messages need only a 2xx
            destination_request = parse_request(message)
            engine = state.engine
            assert engine is not None
            try:
                query = engine.query(destination_request)
            except NoConversation as exc:
                event(logger, "decision", type=kind, outcome="no_conversation", call_id=destination_request.call_id)
                return _reply(state, kind, 200, {"error": str(exc)})
            decision = await engine.decider.decide(query, started)
            fields = _decision_fields(decision, destination_request, engine)
            if settings.log_conversations:
                fields["conversation"] = query.text
            event(logger, "decision", **fields)
            state.metrics.observe(decision)
            if recorder is not None:  # copies the window and queues it: the disk is the writer thread's
                recorder.submit(message, decision, engine.catalogue, query)
            return _reply(state, kind, 200, decision.body)
        except AuthError as exc:
            event(logger, "unauthorized", logging.WARNING, client=request.client.host if request.client else None)
            return _reply(state, kind, 401, {"error": str(exc)}, close=not body_read)
        except PayloadError as exc:
            event(logger, "bad_request", logging.WARNING, status=exc.status, detail=str(exc)[:200])
            return _reply(state, kind, exc.status, {"error": str(exc)}, close=not body_read)
        except ClientDisconnect:
            # The caller went away mid-body: nothing to answer, nobody to answer to, and no stack trace to log.
            event(logger, "client_disconnected", logging.WARNING)
            return Response(status_code=400)
        finally:
            request_id.reset(token)

    health = HealthPage()

    async def healthz(request: Request) -> Response:  # no credentials: for load balancers; cheap (app/service/health.py)
        breaker = state.runtime.breaker
        body, status = health.render(state.engine, breaker.state if breaker and breaker.enabled else "off")
        return Response(body, status_code=status, media_type="application/json")

    async def metrics(request: Request) -> Response:
        if not metrics_allowed(settings, request.headers):
            return JSONResponse({"error": METRICS_REFUSED}, status_code=401, headers={"www-authenticate": "Bearer"})
        breaker = state.runtime.breaker
        if breaker is not None and breaker.enabled:  # open -> half_open happens with time, not on an event
            state.metrics.breaker_changed(breaker.state)
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "not found: POST Vapi webhooks to /webhook"}, status_code=404)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "method not allowed: /webhook takes POST"}, status_code=405)

    async def crashed(request: Request, exc: Exception) -> Response:
        logger.error("internal_error", exc_info=exc, extra={"fields": {"path": request.url.path}})
        return JSONResponse({"error": "internal error; see the service log"}, status_code=500)

    app = Starlette(
        routes=[Route("/webhook", webhook, methods=["POST"]), Route("/healthz", healthz, methods=["GET"]),
                Route("/metrics", metrics, methods=["GET"])],
        exception_handlers={404: not_found, 405: not_allowed, Exception: crashed},
        lifespan=lifespan,
    )
    app.state.switchboard = state
    return app


def _arrived(request: Request) -> float:
    """When the request began to arrive (stamped by the server's protocol), else now."""
    now = time.monotonic()
    stamp = request.scope.get("extensions", {}).get(ARRIVED, {}).get("at")
    return stamp if isinstance(stamp, float) and now - 60 < stamp <= now else now


async def _read_body(request: Request, limit: int, seconds: float) -> bytes:
    """The whole body, within `limit` bytes and `seconds`: a stalled or dribbling upload is cut off (408)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit() or len(declared) > MAX_LENGTH_DIGITS:
            raise PayloadError("Content-Length is not a number.")
        if int(declared) > limit:
            raise PayloadError(f"Body is {declared} bytes; the limit is {limit} (SWITCHBOARD_MAX_BODY_BYTES).", 413)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadError(f"Body is over the limit of {limit} bytes (SWITCHBOARD_MAX_BODY_BYTES).", 413)
                chunks.append(chunk)
    except TimeoutError:
        raise PayloadError(f"Body not received within {seconds:g} s (SWITCHBOARD_READ_TIMEOUT).", 408) from None
    return b"".join(chunks)


def _check_content_type(request: Request) -> None:
    ctype = request.headers.get("content-type")
    if ctype is None:
        return  # tolerate a missing type; the body must still be JSON
    base = ctype.split(";")[0].strip().lower()
    if base not in JSON_TYPES and not base.endswith("+json"):
        raise PayloadError(f"Content-Type {base[:60]!r} is not JSON; send application/json.", 415)


def _reply(state: State, kind: str, status: int, body: dict[str, Any],
           background: BackgroundTask | None = None, close: bool = False) -> Response:
    state.metrics.requests.labels(kind if status < 400 else "invalid", str(status)).inc()
    response = JSONResponse(body, status_code=status, background=background)
    rid = request_id.get()
    if rid:
        response.headers["x-request-id"] = rid
    if close:  # the body was not read: close rather than let the client go on sending it
        response.headers["connection"] = "close"
    return response


def _decision_fields(decision: Decision, request: DestinationRequest, engine: Engine) -> dict[str, Any]:
    assistant = request.assistant
    return {
        "type": request.type, "call_id": request.call_id,
        "assistant": (assistant.name or assistant.id) if assistant else None,
        "chosen": decision.chosen, "candidate": decision.candidate, "answered": decision.answered,
        "closed": decision.closed, "timestamp_ignored": request.timestamp_ignored,
        "outcome": decision.outcome,
        "failure": decision.failure, "rescued_by": decision.rescued_by, "errors": decision.errors or None,
        "unreachable": decision.unreachable or None,
        "total_ms": round(decision.total_ms, 1), "llm_ms": round(decision.llm_ms, 1),
        "attempts": decision.attempts, "hedges": decision.hedges, "router": decision.router,
        "model": decision.model, "score": decision.score, "prompt": engine.routing.prompt.name,
        "prompt_hash": engine.routing.prompt.hash, "prompt_tokens": decision.prompt_tokens,
        "completion_tokens": decision.completion_tokens, "cached_tokens": decision.cached_tokens,
        "unscored": decision.unscored,
    }


def _auth_mode(settings: Settings) -> str:
    modes = [m for m, on in (("secret", settings.secret), ("hmac", settings.hmac_secret)) if on]
    return "+".join(modes) or "none"


def _stamps(settings: Settings) -> tuple[float, float]:
    def mtime(path: Any) -> float:
        try:
            return float(path.stat().st_mtime_ns)
        except OSError:
            return 0.0
    return mtime(settings.destinations), mtime(settings.prompt)


def _build(state: State) -> tuple[tuple[float, float], Engine | Exception | None]:
    """The files' stamps, and a new engine built from them (None: the files are as they were; or why not).
    Runs in a worker thread, so it creates nothing tied to an event loop: no task, future, lock or event. The
    model clients and the runtime (breaker, deadlines, hedging) belong to the process and are passed in as
    they are, not made here."""
    stamps = _stamps(state.settings)
    current = state.engine.routing if state.engine else None
    try:
        routing = load_routing(state.settings, current)  # regular files only, size-capped: a pipe cannot block
        if routing is current:
            return stamps, None
        return stamps, build_engine(state.settings, routing, state.clients, state.runtime)
    except (CatalogueError, PromptError, ConfigError) as exc:
        return stamps, exc


def _swap(state: State, logger: logging.Logger, trigger: str, built: Engine | Exception | None,
          seconds: float) -> bool:
    if isinstance(built, Exception):
        kept = state.engine.routing.prompt.hash if state.engine else None
        event(logger, "reload_failed", logging.ERROR, trigger=trigger, error=str(built), kept_prompt_hash=kept)
        return False
    if built is None:
        event(logger, "reloaded", trigger=trigger, unchanged=True, seconds=round(seconds, 3))
        return True
    state.engine = built  # one assignment: a request sees the old engine or the new one, never a mix
    event(logger, "reloaded", trigger=trigger, seconds=round(seconds, 3), **built.describe())
    return True


def reload(state: State, logger: logging.Logger, trigger: str) -> bool:
    """Swap in a freshly loaded catalogue and prompt, in the calling thread; a broken file leaves the old ones
    in force. The running service reloads through Reloads instead, off the event loop."""
    started = time.monotonic()
    state.stamps, built = _build(state)
    return _swap(state, logger, trigger, built, time.monotonic() - started)


class Reloads:
    """The service's reloads: files read and compiled in a worker thread, the new engine swapped in on the
    event loop once ready, so no caller waits for a whole compile (a 3,000-entry catalogue takes 0.3 s).
    One reload runs at a time and at most one more waits, whatever it was asked for: a burst of SIGHUPs costs
    two compiles, not one each. The thread still shares the GIL with the loop, so the waiting one starts only
    after a pause as long as the last compile took: compiling never takes more than half of the time."""

    def __init__(self, state: State, logger: logging.Logger) -> None:
        self.state, self.logger = state, logger
        self.task: asyncio.Task[None] | None = None
        self.queued: str | None = None

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()

    def request(self, trigger: str) -> None:
        """On the event loop (a signal handler added with add_signal_handler runs there too)."""
        if self.busy:
            self.queued = trigger
            return
        self.task = asyncio.get_running_loop().create_task(self._run(trigger))

    async def _run(self, trigger: str) -> None:
        current: str | None = trigger
        while current is not None:
            started = time.monotonic()
            try:
                self.state.stamps, built = await asyncio.to_thread(_build, self.state)
                _swap(self.state, self.logger, current, built, time.monotonic() - started)
            except Exception:  # a bug here must not end reloading for the life of the process
                self.logger.exception("reload_crashed")
            current, self.queued = self.queued, None
            if current is not None:
                await asyncio.sleep(time.monotonic() - started)


async def _watch(state: State, logger: logging.Logger, reloads: Reloads) -> None:
    while True:
        await asyncio.sleep(state.settings.reload_interval)
        if reloads.busy:
            continue  # its stamps are not known yet; the next look compares with them
        try:
            stamps = await asyncio.to_thread(_stamps, state.settings)  # a stat can hang on a stuck network mount
        except Exception:  # a bug here must not end reloading for the life of the process
            logger.exception("reload_crashed")
            continue
        if stamps != state.stamps:
            reloads.request("file changed")


async def _warm_up(engine: Engine, logger: logging.Logger) -> None:
    sample = DestinationRequest.model_validate({"type": "transfer-destination-request", "artifact": {"messages": [
        {"role": "user", "message": "Hello, I have a question.", "time": 0, "endTime": 0, "secondsFromStart": 0}]}})
    decision = await engine.decide(sample)
    event(logger, "warmed_up", outcome=decision.outcome, total_ms=round(decision.total_ms, 1))
