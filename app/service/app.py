"""The HTTP app: `POST /webhook` for Vapi, `GET /healthz`, `GET /metrics`, wired together.

Each part lives in a module of its own: the webhook (webhook.py), the health page (health.py), the metrics page
(metrics.py), start-up and shutdown (lifespan.py), reloads (reload.py), and what they share (state.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.dataset.recording import Recorder
from app.decision.breaker import CircuitBreaker
from app.engine import Runtime
from app.loading import Routing, startup_checks
from app.logs import LOGGER, event
from app.service.auth import Authenticator
from app.service.health import Healthz
from app.service.lifespan import Lifespan
from app.service.metrics import Metrics, MetricsPage
from app.service.outcomes import check_store
from app.service.reload import stamps
from app.service.state import State
from app.service.webhook import Webhook
from app.settings import Settings


def create_app(settings: Settings, routing: Routing | None = None) -> Starlette:
    """Build the service. Raises a UserError (CatalogueError, PromptError, ConfigError, RecordingError,
    StoreConfigError, StoreError) before serving anything."""
    routing = routing or startup_checks(settings)
    check_store(settings)  # the database URL, and an embedded file's folder; the database itself: in the lifespan
    state = State(settings)
    breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown,
                             on_change=breaker_changed(state.metrics, logging.getLogger(LOGGER)))
    state.runtime = Runtime.for_service(settings, breaker)
    state.stamps = stamps(settings)
    auth = Authenticator.from_settings(settings)
    # Opened here, not in the lifespan: a directory that cannot be written stops `serve` before it listens.
    recorder = Recorder(settings.record_dir, settings.record_redact, registry=state.metrics.registry) \
        if settings.record_dir else None
    app = Starlette(
        routes=[Route("/webhook", Webhook(state, auth, recorder).handle, methods=["POST"]),
                Route("/healthz", Healthz(state).handle, methods=["GET"]),
                Route("/metrics", MetricsPage(state.metrics, settings, breaker, lambda: state.store).handle,
                      methods=["GET"])],
        exception_handlers={404: not_found, 405: not_allowed, Exception: crashed},
        lifespan=Lifespan(state, routing, auth_enabled=auth.enabled, recorder=recorder),
    )
    app.state.switchboard = state
    return app


def breaker_changed(metrics: Metrics, logger: logging.Logger) -> Callable[[str, str], None]:
    """What the circuit breaker tells when it opens or closes: the gauge, and a log line."""
    def changed(old: str, new: str) -> None:
        metrics.breaker_changed(new)
        event(logger, "breaker", logging.WARNING if new == "open" else logging.INFO, **{"from": old, "to": new})
    return changed


async def not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "not found: POST Vapi webhooks to /webhook"}, status_code=404)


async def not_allowed(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "method not allowed: /webhook takes POST"}, status_code=405)


async def crashed(request: Request, exc: Exception) -> Response:
    """A bug: the trace goes to the log, the caller gets a line without it."""
    logging.getLogger(LOGGER).error("internal_error", exc_info=exc, extra={"fields": {"path": request.url.path}})
    return JSONResponse({"error": "internal error; see the service log"}, status_code=500)
