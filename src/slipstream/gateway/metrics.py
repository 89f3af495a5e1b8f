"""Prometheus metrics of the gateway, in a registry the caller owns (no globals).

Per public model and deployment: requests, errors by kind, latency, time to first token,
tokens, retries, fallbacks, breaker state, and the gateway's own overhead.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from slipstream.providers.base import Usage

PREFIX = "slipstream:gateway_"

_LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0,
)  # fmt: skip
_OVERHEAD_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
)  # fmt: skip


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        md = ("model", "deployment")
        self.requests = Counter(
            PREFIX + "requests", "Requests answered, by outcome.", ("model", "status"), registry=r
        )
        self.upstream_requests = Counter(
            PREFIX + "upstream_requests", "Attempts sent to a deployment.", md, registry=r
        )
        self.errors = Counter(
            PREFIX + "errors", "Failed attempts by error kind.", (*md, "kind"), registry=r
        )
        self.latency = Histogram(
            PREFIX + "request_latency_seconds",
            "End-to-end request latency in the gateway.",
            ("model",),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_latency = Histogram(
            PREFIX + "upstream_latency_seconds",
            "Latency of successful attempts (stream: to its last chunk).",
            md,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            PREFIX + "time_to_first_token_seconds",
            "Attempt start to first chunk (or full response).",
            md,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            PREFIX + "tokens", "Tokens reported by upstreams.", (*md, "type"), registry=r
        )
        self.retries = Counter(
            PREFIX + "retries", "Attempts after the first within a model.", md, registry=r
        )
        self.fallbacks = Counter(
            PREFIX + "fallbacks",
            "Switches to a fallback model.",
            ("model", "fallback", "reason"),
            registry=r,
        )
        self.breaker_state = Gauge(
            PREFIX + "breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            md,
            registry=r,
        )
        self.overhead = Histogram(
            PREFIX + "overhead_seconds",
            "Time spent in the gateway itself (stream: to the first chunk).",
            ("model",),
            buckets=_OVERHEAD_BUCKETS,
            registry=r,
        )

        # `labels()` takes a lock and validates on every call; children are cached instead
        # (the label sets are bounded by the config: models x deployments x kinds).
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric, *labels)  # the metric objects live as long as this cache
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def attempt(self, model: str, deployment: str, retry: bool) -> None:
        self._child(self.upstream_requests, model, deployment).inc()
        if retry:
            self._child(self.retries, model, deployment).inc()

    def error(self, model: str, deployment: str, kind: str) -> None:
        self._child(self.errors, model, deployment, kind).inc()

    def first_token(self, model: str, deployment: str, seconds: float) -> None:
        self._child(self.ttft, model, deployment).observe(seconds)

    def upstream_done(
        self, model: str, deployment: str, seconds: float, usage: Usage | None
    ) -> None:
        self._child(self.upstream_latency, model, deployment).observe(seconds)
        if usage is not None:
            self._child(self.tokens, model, deployment, "prompt").inc(usage.prompt_tokens)
            self._child(self.tokens, model, deployment, "completion").inc(usage.completion_tokens)
            if usage.cached_tokens:
                self._child(self.tokens, model, deployment, "cached").inc(usage.cached_tokens)

    def fallback(self, model: str, fallback: str, reason: str) -> None:
        self._child(self.fallbacks, model, fallback, reason).inc()

    def breaker(self, model: str, deployment: str, state: int) -> None:
        self._child(self.breaker_state, model, deployment).set(state)

    def request_done(
        self, model: str, status: int, seconds: float, overhead_s: float | None
    ) -> None:
        self._child(self.requests, model, str(status)).inc()
        self._child(self.latency, model).observe(seconds)
        if overhead_s is not None:
            self._child(self.overhead, model).observe(overhead_s)
