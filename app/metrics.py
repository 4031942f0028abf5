"""Prometheus metrics, on a registry owned by the app (no module globals, so tests get fresh counters)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .decision import CircuitBreaker, Decision

BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0)
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("switchboard_requests", "Webhook requests by message type and HTTP status",
                                ["type", "status"], registry=r)
        self.decisions = Counter("switchboard_decisions", "Transfer decisions by answered destination and outcome",
                                 ["destination", "outcome"], registry=r)
        self.decision_seconds = Histogram("switchboard_decision_seconds", "Time to answer a transfer request",
                                          buckets=BUCKETS, registry=r)
        self.model_seconds = Histogram("switchboard_model_seconds", "Time spent waiting for the router per decision",
                                       buckets=BUCKETS, registry=r)
        self.attempts = Counter("switchboard_model_attempts", "Model attempts", registry=r)
        self.errors = Counter("switchboard_model_errors", "Failed model attempts by kind", ["kind"], registry=r)
        self.hedges = Counter("switchboard_hedges", "Decisions won by a hedged request", registry=r)
        self.tokens = Counter("switchboard_tokens", "Model tokens", ["kind"], registry=r)
        self.breaker = Gauge("switchboard_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open",
                             registry=r)

    def observe(self, decision: Decision) -> None:
        self.decisions.labels(decision.answered or "none", decision.outcome).inc()
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

    def render(self, breaker: CircuitBreaker | None) -> bytes:
        self.breaker.set(BREAKER_STATES[breaker.state] if breaker else 0)
        return generate_latest(self.registry)
