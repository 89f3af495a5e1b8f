"""A fake runner for scheduler tests: it checks each plan the way a real runner depends on it
(positions contiguous, slots allocated, KV of every earlier position present in the right
block) and returns deterministic tokens, next = f(last), so recomputation after preemption
must reproduce exactly the same continuation."""

from __future__ import annotations

import pytest

from slipstream.engine.kv.kv_cache_manager import KVCacheManager
from slipstream.engine.types import SampledToken, StepPlan, TokenLogprob

VOCAB = 1000


def next_token(last: int) -> int:
    return (last * 31 + 7) % VOCAB


class FakeRunner:
    """Keeps a ground-truth KV store: (block, slot) -> token whose KV was written there."""

    def __init__(self, kv: KVCacheManager) -> None:
        self.kv = kv
        self.store: dict[tuple[int, int], int] = {}

    def run(self, plan: StepPlan) -> dict[str, SampledToken]:
        bs = self.kv.block_size
        out: dict[str, SampledToken] = {}
        seen: set[str] = set()
        for seq in plan.seqs:
            req = seq.request
            assert req.request_id not in seen, "request scheduled twice in one step"
            seen.add(req.request_id)
            assert seq.num_tokens > 0
            assert seq.start_pos == req.num_computed_tokens, "chunk positions not contiguous"
            end = seq.start_pos + seq.num_tokens
            assert end <= req.num_tokens
            assert len(req.block_ids) * bs >= end, "slots not allocated"
            # Attention reads every earlier position: its KV must be the request's own token.
            for p in range(seq.start_pos):
                assert self.store.get((req.block_ids[p // bs], p % bs)) == req.token_at(p)
            for p in range(seq.start_pos, end):
                self.store[(req.block_ids[p // bs], p % bs)] = req.token_at(p)
            assert seq.sample == (end == req.num_tokens)
            if seq.sample:
                tok = next_token(seq.token_ids[-1])
                out[req.request_id] = SampledToken(tok, TokenLogprob(tok, -0.5))
        return out


@pytest.fixture(scope="session")
def fake_runner_cls() -> type[FakeRunner]:
    return FakeRunner


@pytest.fixture(scope="session")
def next_token_fn():
    return next_token
