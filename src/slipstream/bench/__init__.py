"""slipstream bench: a load tester for any OpenAI-compatible endpoint.

One raw record per request (scheduled/sent/first-byte/each-chunk timestamps and token deltas);
every metric and every other tool's definition is computed from those records afterwards, so
the hot path only stamps ``time.perf_counter()`` and keeps bytes.

This package imports nothing from ``slipstream.server``, ``gateway`` or ``engine``.
"""

SCHEMA_VERSION = "slipstream.bench.result/v1"

__all__ = ["SCHEMA_VERSION"]
