"""Pick the CPU thread count per step by measuring it, not by guessing.

On a small CPU the best intra-op thread count depends on what else runs: with the cores to
itself, two threads decode ~1.6x faster than one on the 2-core test machine; when the HTTP
process, a client or a neighbour takes a core, every OpenMP barrier waits for a descheduled
thread and two threads run 2-6x *slower* than one (docs/benchmarks.md). So the runner keeps a
moving average of seconds per step for each thread count and step size (tokens, in powers of
two), uses the faster, and re-tries the other every `explore_every` steps of that size so it
follows the machine as the load changes. A re-try is also held back until the steps since the
last one took `explore_every` times the runner-up's own step time, so trying a setting that
is 6x slower costs no more than one trial of a setting that is close (~6% at most).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

ALPHA = 0.25  # weight of the newest sample in the moving average
EXPLORE_EVERY = 16


def size_bucket(num_tokens: int) -> int:
    return max(0, num_tokens - 1).bit_length()


class ThreadTuner:
    def __init__(self, candidates: list[int], explore_every: int = EXPLORE_EVERY) -> None:
        self.candidates = sorted(set(candidates))
        self.explore_every = explore_every
        self.avg: dict[tuple[int, int], float] = {}
        self.steps: dict[int, int] = {}
        self.since_explore: dict[int, float] = {}  # seconds of steps since the last re-try
        self.current = torch.get_num_threads()

    def choose(self, num_tokens: int) -> int:
        if len(self.candidates) == 1:
            return self.candidates[0]
        bucket = size_bucket(num_tokens)
        n = self.steps.get(bucket, 0)
        self.steps[bucket] = n + 1
        untried = [c for c in self.candidates if (bucket, c) not in self.avg]
        if untried:
            return untried[0]
        ranked = sorted(self.candidates, key=lambda c: self.avg[(bucket, c)])
        runner_up_cost = self.avg[(bucket, ranked[1])]
        if (
            n % self.explore_every == self.explore_every - 1
            and self.since_explore.get(bucket, 0.0) >= self.explore_every * runner_up_cost
        ):
            self.since_explore[bucket] = 0.0
            return ranked[1]  # keep the runner-up's estimate fresh
        return ranked[0]

    def record(self, num_tokens: int, threads: int, seconds: float) -> None:
        bucket = size_bucket(num_tokens)
        self.since_explore[bucket] = self.since_explore.get(bucket, 0.0) + seconds
        key = (bucket, threads)
        old = self.avg.get(key)
        self.avg[key] = seconds if old is None else (1 - ALPHA) * old + ALPHA * seconds

    @contextmanager
    def step(self, num_tokens: int) -> Iterator[int]:
        """Run one step under the chosen thread count and learn from its duration."""
        threads = self.choose(num_tokens)
        if threads != self.current:
            torch.set_num_threads(threads)
            self.current = threads
        start = time.perf_counter()
        yield threads
        if len(self.candidates) > 1:
            self.record(num_tokens, threads, time.perf_counter() - start)
