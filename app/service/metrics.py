"""Prometheus metrics, on a registry owned by the app (no module globals, so tests get fresh counters).

With `serve --workers N` every worker writes its counters to prometheus-client's multiprocess directory
(PROMETHEUS_MULTIPROC_DIR, prepared by `switchboard serve`), and a scrape of any worker adds them all up.
Label values come from fixed sets only: a label made from request data would grow without bound.
`switchboard_catalogue_info{hash}` is the one exception, and bounded: the hashes of the catalogues in force.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.decision.breaker import CircuitBreaker
from app.decision.decider import Decision
from app.service.auth import METRICS_REFUSED, metrics_allowed
from app.service.server import METRICS_DIR_ENV
from app.settings import Settings
from app.store import Store, StoreStats

BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0)
BREAKER_STATES = {"off": 0, "closed": 0, "half_open": 1, "open": 2}
# A scrape renders afresh unless the last rendering is younger than this many times its own cost: rendering
# grows with the label sets (74 ms for 3,000 destination/outcome pairs), and /metrics asked in a loop must not
# starve the webhook. A typical rendering takes about 1 ms, so what a scrape shows is at most ~10 ms old.
RENDER_SPACING = 10
STORE_ROWS = ("accepted", "written", "dropped", "rejected", "lost")  # StoreStats counters, as `result` labels
MESSAGE_RESULTS = ("ingested", "dropped", "deferred", "failed")
CATALOGUE_INFO = "switchboard_catalogue_info"
NO_CONVERSATION = "no_conversation"  # a destination request with no caller words: answered with an error


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
        # The decision store (app/store): plain counters and gauges, brought up to date from store.stats()
        # every few seconds and on each scrape, so they add up across workers like the rest.
        self.store_rows = Counter("switchboard_store_rows", "Rows handed to the decision store (accepted), written "
                                  "to the database, dropped (buffer full), rejected (unusable) or lost (still "
                                  "buffered at shutdown)", ["result"], registry=r)
        self.store_buffered = Gauge("switchboard_store_buffered_rows", "Rows waiting for the database", registry=r,
                                    multiprocess_mode="livesum")
        self.store_connected = Gauge("switchboard_store_connected", "1 while the database answers (the lowest "
                                     "of the workers), 0 while it does not", registry=r, multiprocess_mode="livemin")
        self.outcome_messages = Counter("switchboard_outcome_messages", "Vapi outcome messages (end-of-call-report, "
                                        "status-update, transfer-update): ingested, dropped (too many in flight), "
                                        "deferred (joined once the database answers) or failed", ["result"],
                                        registry=r)
        # Destination ids from the catalogue only (others are `other`): the label set stays the catalogue's
        self.transfer_outcomes = Counter("switchboard_transfer_outcomes", "Decisions by answered destination and "
                                         "the outcome Vapi's messages settled them to (reached, unreachable, hung_up, "
                                         "rerouted), once each",
                                         ["destination", "outcome"], registry=r)
        # 1 for the hash of the catalogue in force ("livemax": in force in any live worker). A reload sets the
        # old hash to 0, and 0s are left out of the page: with --workers N a series cannot be removed from the
        # shared files, and an old catalogue must not look as if it were still in force.
        self.catalogue = Gauge(CATALOGUE_INFO, "The catalogue in force, by its hash (as /healthz and every "
                               "decision log line name it): 1", ["hash"], registry=r, multiprocess_mode="livemax")
        self.reload_failures = Counter("switchboard_reload_failures", "Reloads that left the catalogue and prompt "
                                       "in force as they were (a file could not be used)", registry=r)
        self._catalogue_hash: str | None = None
        for result in STORE_ROWS:
            self.store_rows.labels(result)
        for result in MESSAGE_RESULTS:
            self.outcome_messages.labels(result)
        self._store_seen = dict.fromkeys(STORE_ROWS, 0)
        self._rendered = b""
        self._fresh_until = 0.0

    def store_changed(self, stats: StoreStats) -> None:
        """Bring the store's counters up to `stats` (counters only go up: by what changed since the last call)."""
        if not stats.enabled:
            return
        for result in STORE_ROWS:
            value = getattr(stats, result)
            delta = value - self._store_seen[result]
            if delta > 0:
                self.store_rows.labels(result).inc(delta)
                self._store_seen[result] = value
        self.store_buffered.set(stats.buffered)
        self.store_connected.set(1 if stats.connected else 0)

    def catalogue_in_force(self, digest: str) -> None:
        """The catalogue with hash `digest` now answers, in place of the one before (if any)."""
        old, self._catalogue_hash = self._catalogue_hash, digest
        if old == digest:
            return
        if old is not None:
            self.catalogue.labels(old).set(0)
            if not _multiprocess():  # prometheus-client cannot remove a series from the shared files
                self.catalogue.remove(old)
        self.catalogue.labels(digest).set(1)

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

    def no_conversation(self, kind: str) -> None:
        """A destination request answered with an error because it held no caller words."""
        self.decisions.labels(kind, "none", NO_CONVERSATION).inc()

    def render(self) -> bytes:
        started = time.monotonic()
        if started < self._fresh_until:
            return self._rendered
        if _multiprocess():
            registry = CollectorRegistry()
            registry.register(InForce(multiprocess.MultiProcessCollector(None)))  # type: ignore[no-untyped-call]
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


class InForce(Collector):
    """The workers' shared metrics, without the 0s of catalogues no longer in force."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def collect(self) -> Iterator[Metric]:
        for metric in self.collector.collect():
            if metric.name == CATALOGUE_INFO:
                metric.samples = [s for s in metric.samples if s.value]
            yield metric


class MetricsPage:
    """`Route("/metrics", MetricsPage(...).handle, methods=["GET"])`: behind SWITCHBOARD_METRICS_TOKEN when set.
    `breaker` is the process's (it outlives reloads), None when there is none."""

    def __init__(self, metrics: Metrics, settings: Settings, breaker: CircuitBreaker | None,
                 store: Callable[[], Store | None] = lambda: None) -> None:
        self.metrics, self.settings = metrics, settings
        self.breaker = breaker
        self.store = store  # the decision store once open, for its figures, brought up to date on each scrape

    async def handle(self, request: Request) -> Response:
        if not metrics_allowed(self.settings, request.headers):
            return JSONResponse({"error": METRICS_REFUSED}, status_code=401, headers={"www-authenticate": "Bearer"})
        breaker = self.breaker
        if breaker is not None and breaker.enabled:  # open -> half_open happens with time, not on an event
            self.metrics.breaker_changed(breaker.state)
        store = self.store()
        if store is not None:
            self.metrics.store_changed(store.stats())
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")
