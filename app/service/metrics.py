"""Prometheus metrics, on a registry owned by the app (no module globals, so tests get fresh counters).

With `serve --workers N` every worker writes its counters to prometheus-client's multiprocess directory
(PROMETHEUS_MULTIPROC_DIR, prepared by `switchboard serve`), and a scrape of any worker adds them all up.
Label values come from fixed sets only: a label made from request data would grow without bound.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.decision.breaker import CircuitBreaker
from app.decision.decider import Decision
from app.service.auth import METRICS_REFUSED, metrics_allowed
from app.service.server import METRICS_DIR_ENV
from app.settings import Settings

BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0)
BREAKER_STATES = {"off": 0, "closed": 0, "half_open": 1, "open": 2}
# A scrape renders afresh unless the last rendering is younger than this many times its own cost: rendering
# grows with the label sets (74 ms for 3,000 destination/outcome pairs), and /metrics asked in a loop must not
# starve the webhook. A typical rendering takes about 1 ms, so what a scrape shows is at most ~10 ms old.
RENDER_SPACING = 10


def _multiprocess() -> bool:
    return bool(os.environ.get(METRICS_DIR_ENV))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("switchboard_requests", "Webhook requests by message type and HTTP status",
                                ["type", "status"], registry=r)
        self.decisions = Counter("switchboard_decisions", "Decisions by kind, answered destination and outcome",
                                 ["kind", "destination", "outcome"], registry=r)
        self.decision_seconds = Histogram("switchboard_decision_seconds", "Time to answer a destination request",
                                          buckets=BUCKETS, registry=r)
        self.model_seconds = Histogram("switchboard_model_seconds", "Time spent waiting for the router per decision",
                                       buckets=BUCKETS, registry=r)
        self.attempts = Counter("switchboard_model_attempts", "Model attempts", registry=r)
        self.errors = Counter("switchboard_model_errors", "Failed model attempts by kind", ["kind"], registry=r)
        self.hedges = Counter("switchboard_hedges", "Hedged requests sent", registry=r)
        self.tokens = Counter("switchboard_tokens", "Model tokens, failed attempts included", ["kind"], registry=r)
        self.scores = Histogram("switchboard_decision_score", "The router's confidence in its answer (the LLM's "
                                "probability of the id, the offline router's margin)", ["router"],
                                buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0), registry=r)
        # "livemax": the worst state among the live workers (each has its own breaker)
        self.breaker = Gauge("switchboard_breaker_state", "Circuit breaker: 0 closed or off, 1 half-open, 2 open",
                             registry=r, multiprocess_mode="livemax")
        self._rendered = b""
        self._fresh_until = 0.0

    def breaker_changed(self, state: str) -> None:
        self.breaker.set(BREAKER_STATES[state])

    def observe(self, decision: Decision) -> None:
        # `answered` is only ever set from catalogue ids, so the label set stays the catalogue's
        self.decisions.labels(decision.kind, decision.answered or "none", decision.outcome).inc()
        self.decision_seconds.observe(decision.total_ms / 1000)
        self.model_seconds.observe(decision.llm_ms / 1000)
        self.attempts.inc(decision.attempts)
        for kind in decision.errors:
            self.errors.labels(kind).inc()
        if decision.failure == "timeout" and "timeout" not in decision.errors:
            self.errors.labels("timeout").inc()
        self.hedges.inc(decision.hedges)
        self.tokens.labels("prompt").inc(decision.prompt_tokens)
        self.tokens.labels("completion").inc(decision.completion_tokens)
        self.tokens.labels("cached_prompt").inc(decision.cached_tokens)
        if decision.score is not None:
            self.scores.labels(decision.router).observe(decision.score)

    def render(self) -> bytes:
        started = time.monotonic()
        if started < self._fresh_until:
            return self._rendered
        if _multiprocess():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            self._rendered = generate_latest(registry)
        else:
            self._rendered = generate_latest(self.registry)
        done = time.monotonic()
        self._fresh_until = done + RENDER_SPACING * (done - started)
        return self._rendered

    @staticmethod
    def process_exited() -> None:
        if _multiprocess():
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class MetricsPage:
    """`Route("/metrics", MetricsPage(...).handle, methods=["GET"])`: behind SWITCHBOARD_METRICS_TOKEN when set.
    `breaker` is the process's (it outlives reloads), None when there is none."""

    def __init__(self, metrics: Metrics, settings: Settings, breaker: CircuitBreaker | None) -> None:
        self.metrics, self.settings = metrics, settings
        self.breaker = breaker

    async def handle(self, request: Request) -> Response:
        if not metrics_allowed(self.settings, request.headers):
            return JSONResponse({"error": METRICS_REFUSED}, status_code=401, headers={"www-authenticate": "Bearer"})
        breaker = self.breaker
        if breaker is not None and breaker.enabled:  # open -> half_open happens with time, not on an event
            self.metrics.breaker_changed(breaker.state)
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")
