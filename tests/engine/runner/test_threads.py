"""ThreadTuner: picks the faster thread count per step size and keeps checking the other."""

from __future__ import annotations

import torch

from slipstream.engine.runner.threads import ThreadTuner, size_bucket


def drive(tuner: ThreadTuner, cost: dict[int, float], steps: int, tokens: int = 1) -> list[int]:
    chosen = []
    for _ in range(steps):
        t = tuner.choose(tokens)
        tuner.record(tokens, t, cost[t])
        chosen.append(t)
    return chosen


def test_size_buckets_are_powers_of_two() -> None:
    assert [size_bucket(n) for n in (1, 2, 3, 4, 5, 8, 9, 512)] == [0, 1, 2, 2, 3, 3, 4, 9]


def test_tuner_settles_on_the_faster_count_and_follows_a_change() -> None:
    tuner = ThreadTuner([1, 2])
    chosen = drive(tuner, {1: 0.030, 2: 0.018}, 200)
    assert chosen[:2] == [1, 2]  # each tried once
    assert chosen[50:].count(2) / len(chosen[50:]) > 0.9
    # a neighbour takes a core: two threads become 6x slower than one
    chosen = drive(tuner, {1: 0.030, 2: 0.180}, 300)
    tail = chosen[100:]
    assert tail.count(1) / len(tail) > 0.95
    # time spent re-trying the slow setting stays within ~1/16 of the total
    slow_time = tail.count(2) * 0.180
    assert slow_time / (slow_time + tail.count(1) * 0.030) < 0.1


def test_step_sizes_are_tuned_separately_and_a_fixed_count_is_kept() -> None:
    tuner = ThreadTuner([1, 2])
    drive(tuner, {1: 0.030, 2: 0.018}, 60, tokens=1)
    drive(tuner, {1: 0.100, 2: 0.400}, 60, tokens=256)
    assert 2 in (tuner.choose(1), tuner.choose(1))  # one of two may be a re-try of 1
    assert tuner.avg[(size_bucket(256), 1)] < tuner.avg[(size_bucket(256), 2)]
    before = torch.get_num_threads()
    fixed = ThreadTuner([3])
    try:
        with fixed.step(5) as threads:
            assert threads == 3 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    assert fixed.avg == {}
