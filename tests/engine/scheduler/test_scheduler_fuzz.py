"""Random workloads against tiny pools and budgets: every step respects the budget and the
block invariants, nothing stalls, and every request that was not aborted produces exactly
its deterministic continuation, however often it was chunked or preempted."""

from __future__ import annotations

from collections import Counter, defaultdict

from hypothesis import event, given, settings
from hypothesis import strategies as st

from slipstream.engine.config import SchedulerConfig
from slipstream.engine.kv.kv_cache_manager import KVCacheManager
from slipstream.engine.scheduler.scheduler import Scheduler
from slipstream.engine.types import Request, RequestStatus, SamplingParams

PREFIXES = ([1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 9, 9], [5, 5, 5])

request_spec = st.tuples(
    st.sampled_from(PREFIXES),
    st.lists(st.integers(0, 50), max_size=6),  # prompt tail
    st.integers(1, 12),  # max_tokens
    st.sampled_from([None, "t1"]),  # cache salt
    st.integers(0, 8),  # arrival step
)


@settings(max_examples=300, deadline=None)
@given(
    block_size=st.integers(1, 4),
    num_blocks=st.integers(3, 20),
    budget=st.integers(1, 20),
    max_seqs=st.integers(1, 5),
    threshold=st.integers(0, 6),
    caching=st.booleans(),
    specs=st.lists(request_spec, min_size=1, max_size=8),
    aborts=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 7)), max_size=2),
)
def test_random_workloads_finish_correctly(
    fake_runner_cls,
    next_token_fn,
    block_size,
    num_blocks,
    budget,
    max_seqs,
    threshold,
    caching,
    specs,
    aborts,
) -> None:
    kv = KVCacheManager(block_size, num_blocks, caching)
    sched = Scheduler(SchedulerConfig(budget, max_seqs, threshold), kv, max_model_len=64)
    runner = fake_runner_cls(kv)
    capacity = block_size * num_blocks
    pending = []
    for i, (prefix, tail, max_tokens, salt, arrival) in enumerate(specs):
        prompt = (prefix + tail)[:capacity]
        r = Request(f"r{i}", prompt, SamplingParams(max_tokens=max_tokens), cache_salt=salt)
        pending.append((arrival, r))
    tokens: dict[str, list[int]] = defaultdict(list)
    aborted: set[str] = set()
    step = 0
    while pending or sched.has_unfinished():
        for arrival, r in [p for p in pending if p[0] <= step]:
            sched.add_request(r)
            pending.remove((arrival, r))
        for when, idx in aborts:
            if when == step and idx < len(specs):
                for r in sched.abort_requests([f"r{idx}"]):
                    assert r.block_ids == []
                    aborted.add(r.request_id)
        plan = sched.schedule()
        assert not sched.has_unfinished() or not plan.empty, "stalled"
        assert plan.num_tokens <= budget and len(plan.seqs) <= max_seqs
        assert sched.num_running <= max_seqs
        for out in sched.update(plan, runner.run(plan)):
            tokens[out.request_id] += out.new_token_ids
        refs = Counter(b for r in sched.running for b in r.block_ids)
        for b in range(num_blocks):
            assert kv.pool.ref_count(b) == refs[b]
        assert kv.num_free_blocks + len(refs) == num_blocks
        for r in sched.waiting:
            assert r.block_ids == [] and r.status is not RequestStatus.RUNNING
        step += 1
        assert step < 2_000, "no progress"

    assert kv.num_free_blocks == num_blocks
    for i, (prefix, tail, max_tokens, _, _) in enumerate(specs):
        rid = f"r{i}"
        prompt = (prefix + tail)[:capacity]
        # A prompt that fills the pool (or max_model_len) still yields one token.
        n = max(min(max_tokens, min(64, capacity) - len(prompt)), 1)
        cont, last = [], prompt[-1]
        for _ in range(n):
            last = next_token_fn(last)
            cont.append(last)
        if rid in aborted:
            assert tokens[rid] == cont[: len(tokens[rid])]
        else:
            assert tokens[rid] == cont
    stats = sched.stats()
    assert 0 <= stats.prefix_cache_hits <= stats.prefix_cache_queries
    if not caching:
        assert stats.prefix_cache_queries == 0
    event(f"preempted={stats.num_preemptions > 0}")
    event(f"prefix_hit={stats.prefix_cache_hits > 0}")
