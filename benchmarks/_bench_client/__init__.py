"""Parts of benchmarks/bench_client.py: the no-op server, error statistics, the table."""
