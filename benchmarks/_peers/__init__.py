"""Helpers of benchmarks/engine_cpu.py: the peer servers, the load, the HF baseline."""
