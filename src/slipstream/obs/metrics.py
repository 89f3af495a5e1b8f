"""Prometheus metrics for a serving front end, named as vLLM names them (prefix `slipstream:`).

Everything lives in a private `CollectorRegistry` owned by a `ServingMetrics` instance, so
two servers in one process (tests) never share counters. Per-request latencies are observed
through the `RequestObserver` hooks the engine client calls; engine-wide numbers (running,
waiting, KV usage, prefix-cache and preemption counts) are read from the latest
`EngineStats` at scrape time, because the engine already keeps them cumulatively.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from slipstream.engine.types import EngineStats

PREFIX = "slipstream:"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0,
)  # fmt: skip
_ITL_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3,
    0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class _EngineStatsCollector(Collector):
    """Reads engine-wide gauges and cumulative counters from the latest EngineStats."""

    def __init__(self, stats: Callable[[], EngineStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        yield GaugeMetricFamily(
            PREFIX + "num_requests_running", "Requests in the running batch.", value=s.num_running
        )
        yield GaugeMetricFamily(
            PREFIX + "num_requests_waiting",
            "Requests waiting to be scheduled.",
            value=s.num_waiting,
        )
        yield GaugeMetricFamily(
            PREFIX + "kv_cache_usage_perc",
            "Fraction of KV-cache blocks in use (1 = full).",
            value=s.kv_cache_usage,
        )
        yield CounterMetricFamily(
            PREFIX + "prefix_cache_queries",
            "Prompt tokens looked up in the prefix cache.",
            value=s.prefix_cache_queries,
        )
        yield CounterMetricFamily(
            PREFIX + "prefix_cache_hits",
            "Prompt tokens found in the prefix cache.",
            value=s.prefix_cache_hits,
        )
        yield CounterMetricFamily(
            PREFIX + "num_preemptions",
            "Requests preempted by the scheduler.",
            value=s.num_preemptions,
        )


class ServingMetrics:
    """All metrics of one server; implements the engine client's `RequestObserver` hooks."""

    def __init__(self, stats: Callable[[], EngineStats] = EngineStats) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.time_to_first_token = Histogram(
            PREFIX + "time_to_first_token_seconds",
            "Time from request arrival to its first generated token.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inter_token_latency = Histogram(
            PREFIX + "inter_token_latency_seconds",
            "Time between successive token deliveries of one request.",
            buckets=_ITL_BUCKETS,
            registry=r,
        )
        self.e2e_request_latency = Histogram(
            PREFIX + "e2e_request_latency_seconds",
            "Time from request arrival to its last token.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.request_queue_time = Histogram(
            PREFIX + "request_queue_time_seconds",
            "Time a request waited before the engine first scheduled it.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            PREFIX + "prompt_tokens", "Prompt tokens of finished requests.", registry=r
        )
        self.generation_tokens = Counter(
            PREFIX + "generation_tokens", "Generated tokens of finished requests.", registry=r
        )
        self.request_success = Counter(
            PREFIX + "request_success",
            "Finished requests, by finish reason.",
            ["finished_reason"],
            registry=r,
        )
        self._stats_collector = _EngineStatsCollector(stats)
        r.register(self._stats_collector)

    # --- RequestObserver ---------------------------------------------------------------

    def on_first_token(self, ttft_s: float, queue_time_s: float | None) -> None:
        self.time_to_first_token.observe(ttft_s)
        if queue_time_s is not None:
            self.request_queue_time.observe(queue_time_s)

    def on_next_token(self, itl_s: float) -> None:
        self.inter_token_latency.observe(itl_s)

    def on_finished(
        self, finish_reason: str, e2e_s: float, prompt_tokens: int, completion_tokens: int
    ) -> None:
        self.e2e_request_latency.observe(e2e_s)
        self.prompt_tokens.inc(prompt_tokens)
        self.generation_tokens.inc(completion_tokens)
        self.request_success.labels(finished_reason=finish_reason).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
