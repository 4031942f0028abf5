"""The decision: the time budget, retries, hedging, the circuit breaker and the failure policy."""
