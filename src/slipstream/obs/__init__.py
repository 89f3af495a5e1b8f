"""Observability: Prometheus metrics (tracing and structured logs later)."""
