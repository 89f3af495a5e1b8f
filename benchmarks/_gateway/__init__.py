"""Helpers of benchmarks/gateway_overhead.py: the upstream, the servers, wrk, streaming timing, tables."""
