"""Scheduler behaviour, driven by the fake runner from conftest.py."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from slipstream.engine.config import SchedulerConfig
from slipstream.engine.kv.kv_cache_manager import KVCacheManager
from slipstream.engine.scheduler.scheduler import RequestTooLongError, Scheduler
from slipstream.engine.types import Request, RequestStatus, SamplingParams, StepPlan


def make(
    num_blocks: int = 64,
    block_size: int = 4,
    budget: int = 32,
    max_seqs: int = 8,
    threshold: int = 0,
    max_model_len: int = 10_000,
    caching: bool = True,
) -> Scheduler:
    kv = KVCacheManager(block_size, num_blocks, caching)
    return Scheduler(SchedulerConfig(budget, max_seqs, threshold), kv, max_model_len)


def req(rid: str, prompt: list[int], max_tokens: int = 8, **kw) -> Request:
    sampling_keys = {"min_tokens", "stop_token_ids", "ignore_eos"}
    sampling = SamplingParams(
        max_tokens=max_tokens, **{k: v for k, v in kw.items() if k in sampling_keys}
    )
    rest = {k: v for k, v in kw.items() if k not in sampling_keys}
    return Request(rid, prompt_token_ids=prompt, sampling=sampling, **rest)


def expected(prompt: list[int], n: int, next_token) -> list[int]:
    out, last = [], prompt[-1]
    for _ in range(n):
        last = next_token(last)
        out.append(last)
    return out


def check_blocks(sched: Scheduler) -> None:
    pool = sched.kv.pool
    refs = Counter(b for r in sched.running for b in r.block_ids)
    for r in sched.waiting:
        assert r.block_ids == [] and r.num_computed_tokens == 0
    for b in range(pool.num_blocks):
        assert pool.ref_count(b) == refs[b]
    assert pool.num_free + len(refs) == pool.num_blocks


def drive(sched: Scheduler, runner, max_steps: int = 5_000):
    """Run to completion; returns (tokens per request, finish reasons, plans)."""
    tokens: dict[str, list[int]] = defaultdict(list)
    reasons: dict[str, str] = {}
    plans: list[StepPlan] = []
    while sched.has_unfinished():
        plan = sched.schedule()
        assert not plan.empty, "stalled with unfinished requests"
        assert plan.num_tokens <= sched.config.max_num_batched_tokens
        assert len(plan.seqs) <= sched.config.max_num_seqs
        check_blocks(sched)
        plans.append(plan)
        for out in sched.update(plan, runner.run(plan)):
            assert out.request_id not in reasons
            tokens[out.request_id] += out.new_token_ids
            if out.finish_reason:
                reasons[out.request_id] = out.finish_reason
        check_blocks(sched)
        assert len(plans) < max_steps
    return tokens, reasons, plans


def test_mixed_prefill_and_decode_in_one_budget(fake_runner_cls, next_token_fn) -> None:
    sched = make(budget=16)
    runner = fake_runner_cls(sched.kv)
    a, b = req("a", list(range(10)), max_tokens=6), req("b", list(range(100, 130)), 3)
    sched.add_request(a)
    plan = sched.schedule()
    assert [(s.request.request_id, s.start_pos, s.num_tokens, s.sample) for s in plan.seqs] == [
        ("a", 0, 10, True)
    ]
    sched.update(plan, runner.run(plan))
    sched.add_request(b)
    plan = sched.schedule()  # a decodes, b gets the rest of the budget
    assert [(s.request.request_id, s.start_pos, s.num_tokens, s.sample) for s in plan.seqs] == [
        ("a", 10, 1, True),
        ("b", 0, 15, False),
    ]
    assert sched.stats().step_tokens == 16
    sched.update(plan, runner.run(plan))
    plan = sched.schedule()
    assert [(s.start_pos, s.num_tokens, s.sample) for s in plan.seqs] == [
        (11, 1, True),
        (15, 15, True),
    ]
    sched.update(plan, runner.run(plan))
    tokens, reasons, _ = drive(sched, runner)
    assert tokens["b"] == b.output_token_ids[1:]  # b's first token came before drive()
    assert a.output_token_ids == expected(a.prompt_token_ids, 6, next_token_fn)
    assert b.output_token_ids == expected(b.prompt_token_ids, 3, next_token_fn)
    assert reasons == {"a": "length", "b": "length"}


def test_long_prefill_threshold_chunks_prompt(fake_runner_cls) -> None:
    sched = make(budget=64, threshold=8)
    runner = fake_runner_cls(sched.kv)
    sched.add_request(req("a", list(range(20)), max_tokens=2))
    _, _, plans = drive(sched, runner)
    assert [(p.seqs[0].start_pos, p.seqs[0].num_tokens) for p in plans] == [
        (0, 8),
        (8, 8),
        (16, 4),
        (20, 1),
    ]


def test_max_num_seqs_caps_running(fake_runner_cls, next_token_fn) -> None:
    sched = make(max_seqs=2)
    runner = fake_runner_cls(sched.kv)
    reqs = [req(f"r{i}", [i, i + 1, i + 2], max_tokens=3) for i in range(5)]
    for r in reqs:
        sched.add_request(r)
    tokens, _, plans = drive(sched, runner)
    assert max(len(p.seqs) for p in plans) == 2
    for r in reqs:
        assert tokens[r.request_id] == expected(r.prompt_token_ids, 3, next_token_fn)


def test_preemption_under_tiny_pool_loses_no_tokens(fake_runner_cls, next_token_fn) -> None:
    # 6 blocks of 4 tokens; each request grows to 6 + 10 = 16 tokens = 4 blocks.
    sched = make(num_blocks=6, block_size=4, budget=64)
    runner = fake_runner_cls(sched.kv)
    reqs = [req(f"r{i}", [i * 10 + j for j in range(6)], max_tokens=10) for i in range(4)]
    for r in reqs:
        sched.add_request(r)
    tokens, reasons, plans = drive(sched, runner)
    assert sched.stats().num_preemptions > 0
    assert any(p.preempted_ids for p in plans)
    for r in reqs:
        assert tokens[r.request_id] == expected(r.prompt_token_ids, 10, next_token_fn)
        assert r.output_token_ids == tokens[r.request_id]
        assert reasons[r.request_id] == "length"
    assert sched.kv.usage == 0.0 and sched.kv.num_free_blocks == 6


def test_preempts_most_recently_admitted_to_front_of_queue(fake_runner_cls) -> None:
    sched = make(num_blocks=4, block_size=2, budget=64)
    runner = fake_runner_cls(sched.kv)
    a, b, c = req("a", [1, 2, 3], 8), req("b", [4, 5, 6], 8), req("c", [7, 8, 9, 10, 11], 8)
    for r in (a, b, c):
        sched.add_request(r)
    plan = sched.schedule()  # a and b admitted (2 blocks each); c waits
    assert [s.request for s in plan.seqs] == [a, b]
    sched.update(plan, runner.run(plan))
    plan = sched.schedule()  # decode position 3 still fits in each one's 2nd block
    assert [s.request for s in plan.seqs] == [a, b] and not plan.preempted_ids
    sched.update(plan, runner.run(plan))
    plan = sched.schedule()  # a needs a 3rd block: b, the newest, is preempted
    assert plan.preempted_ids == ["b"] and [s.request for s in plan.seqs] == [a]
    assert b.status is RequestStatus.PREEMPTED and b.block_ids == []
    assert list(sched.waiting) == [b, c] and b.num_preemptions == 1


def test_request_longer_than_pool_is_rejected_and_growth_stops_at_pool(fake_runner_cls) -> None:
    sched = make(num_blocks=2, block_size=4)
    with pytest.raises(RequestTooLongError):
        sched.add_request(req("big", list(range(9))))
    with pytest.raises(RequestTooLongError):
        make(max_model_len=4).add_request(req("long", list(range(5))))
    r = req("fits", list(range(5)), max_tokens=100)
    sched.add_request(r)
    _, reasons, _ = drive(sched, fake_runner_cls(sched.kv))
    assert reasons == {"fits": "length"} and r.num_tokens == 8


def test_abort_frees_blocks_immediately(fake_runner_cls) -> None:
    sched = make(num_blocks=8, block_size=4, max_seqs=1)
    runner = fake_runner_cls(sched.kv)
    a, b = req("a", list(range(10)), 50), req("b", list(range(5)), 50)
    sched.add_request(a)
    sched.add_request(b)
    plan = sched.schedule()
    sched.update(plan, runner.run(plan))
    assert sched.kv.num_free_blocks == 5 and sched.num_waiting == 1
    done = sched.abort_requests(["a", "b", "unknown"])
    assert done == [a, b]
    assert a.status is b.status is RequestStatus.FINISHED_ABORTED
    assert sched.kv.num_free_blocks == 8 and a.block_ids == []
    assert not sched.has_unfinished() and sched.num_running == sched.num_waiting == 0


def test_finish_requests_between_schedule_and_update(fake_runner_cls) -> None:
    sched = make()
    runner = fake_runner_cls(sched.kv)
    a = req("a", [1, 2, 3], 5)
    sched.add_request(a)
    plan = sched.schedule()
    sampled = runner.run(plan)
    assert sched.finish_requests(["a"], "stop") == [a]
    assert sched.update(plan, sampled) == []  # no tokens for a finished request
    assert a.status is RequestStatus.FINISHED_STOPPED and a.output_token_ids == []
    with pytest.raises(ValueError):
        sched.finish_requests(["a"], "running")


def test_salted_requests_do_not_share_prefix_blocks(fake_runner_cls) -> None:
    sched = make(block_size=4)
    runner = fake_runner_cls(sched.kv)
    prompt = list(range(13))
    sched.add_request(req("a", prompt, 1, cache_salt="tenant-a"))
    drive(sched, runner)
    other = req("b", prompt, 1, cache_salt="tenant-b")
    same = req("c", prompt, 1, cache_salt="tenant-a")
    sched.add_request(other)
    sched.add_request(same)
    tokens, _, plans = drive(sched, runner)
    assert tokens["b"] == tokens["c"]  # same output, separate KV
    assert other.num_cached_tokens == 0 and same.num_cached_tokens == 12
    assert plans[0].seqs[0].num_tokens == 13 and plans[0].seqs[1].start_pos == 12


def test_prefix_hits_are_counted_and_reported(fake_runner_cls, next_token_fn) -> None:
    sched = make(block_size=4)
    runner = fake_runner_cls(sched.kv)
    first = req("a", list(range(10)), 6)  # 16 tokens: generated tokens fill blocks too
    sched.add_request(first)
    drive(sched, runner)
    assert (sched.stats().prefix_cache_queries, sched.stats().prefix_cache_hits) == (10, 0)
    turn2 = req("b", [*first.all_token_ids, 500, 501], 2)  # 18 tokens, 3 full cached blocks
    sched.add_request(turn2)
    plan = sched.schedule()
    assert (plan.seqs[0].start_pos, plan.seqs[0].num_tokens) == (12, 6)
    outs = sched.update(plan, runner.run(plan))
    assert outs[0].num_cached_tokens == 12 and outs[0].num_prompt_tokens == 18
    assert outs[0].new_logprobs is not None and outs[0].new_logprobs[0].logprob == -0.5
    stats = sched.stats()
    assert (stats.prefix_cache_queries, stats.prefix_cache_hits) == (28, 12)
    drive(sched, runner)
    assert turn2.output_token_ids == expected(turn2.prompt_token_ids, 2, next_token_fn)


@pytest.mark.parametrize(
    ("kw", "stop_index", "reason"),
    [
        ({"eos": 1}, 1, "stop"),  # eos is the 2nd token
        ({"eos": 1, "min_tokens": 3}, 7, "length"),  # eos too early: ignored
        ({"eos": 1, "ignore_eos": True}, 7, "length"),
        ({"stop": 2}, 2, "stop"),
        ({"stop": 2, "min_tokens": 3}, 2, "stop"),  # the 3rd token may stop
        ({"max_model_len": 7}, 2, "length"),  # 4 prompt + 3 outputs reach 7
    ],
)
def test_stop_conditions(fake_runner_cls, next_token_fn, kw, stop_index, reason) -> None:
    prompt = [3, 1, 4, 1]
    cont = expected(prompt, 8, next_token_fn)
    extra = {}
    if "eos" in kw:
        extra["eos_token_ids"] = frozenset({cont[kw["eos"]]})
    if "stop" in kw:
        extra["stop_token_ids"] = (cont[kw["stop"]],)
    for key in ("min_tokens", "ignore_eos", "max_model_len"):
        if key in kw:
            extra[key] = kw[key]
    sched = make()
    r = req("r", prompt, max_tokens=8, **extra)
    sched.add_request(r)
    tokens, reasons, _ = drive(sched, fake_runner_cls(sched.kv))
    assert tokens["r"] == cont[: stop_index + 1]
    assert reasons == {"r": reason}
    assert sched.kv.usage == 0.0


def test_rejects_duplicate_and_empty(fake_runner_cls) -> None:
    sched = make()
    sched.add_request(req("a", [1]))
    with pytest.raises(ValueError):
        sched.add_request(req("a", [2]))
    with pytest.raises(ValueError):
        sched.add_request(req("b", []))
