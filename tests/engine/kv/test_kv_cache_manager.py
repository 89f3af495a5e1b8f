"""KVCacheManager: prefix hits, atomic allocation, and a state machine that tracks what each
physical block really contains, so a prefix hit serving wrong KV cannot go unnoticed."""

from __future__ import annotations

from collections import Counter

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from slipstream.engine.kv.kv_cache_manager import KVCacheManager
from slipstream.engine.types import Request


def _admit_and_compute(kv: KVCacheManager, req: Request) -> int:
    hits, num_cached = kv.get_computed_blocks(req)
    assert kv.allocate_slots(req, req.num_tokens - num_cached, hits)
    req.num_computed_tokens = req.num_tokens
    kv.cache_full_blocks(req)
    return num_cached


def test_prefix_hit_reuses_blocks_and_counts_tokens() -> None:
    kv = KVCacheManager(block_size=4, num_blocks=10)
    a = Request("a", prompt_token_ids=list(range(10)))
    assert _admit_and_compute(kv, a) == 0
    b = Request("b", prompt_token_ids=[*range(8), 99, 98, 97])
    assert _admit_and_compute(kv, b) == 8
    assert b.block_ids[:2] == a.block_ids[:2] and b.block_ids[2] != a.block_ids[2]
    assert kv.pool.ref_count(a.block_ids[0]) == 2
    assert (kv.prefix_cache_queries, kv.prefix_cache_hits) == (21, 8)
    kv.free(a)
    kv.free(b)
    assert kv.num_free_blocks == 10 and kv.usage == 0.0


def test_fully_cached_prompt_still_computes_its_last_block() -> None:
    kv = KVCacheManager(block_size=4, num_blocks=8)
    _admit_and_compute(kv, Request("a", prompt_token_ids=list(range(8))))
    again = Request("b", prompt_token_ids=list(range(8)))
    hits, num_cached = kv.get_computed_blocks(again)
    assert num_cached == 4 and len(hits) == 1


def test_generated_tokens_are_cached_for_the_next_turn() -> None:
    kv = KVCacheManager(block_size=4, num_blocks=8)
    a = Request("a", prompt_token_ids=[1, 2, 3])
    _admit_and_compute(kv, a)
    for tok in (4, 5, 6):  # decode: each step computes the previously sampled token
        a.output_token_ids.append(tok)
        assert kv.allocate_slots(a, 1)
        a.num_computed_tokens += 1
        kv.cache_full_blocks(a)
    turn2 = Request("b", prompt_token_ids=[1, 2, 3, 4, 5, 6, 7])
    assert kv.get_computed_blocks(turn2) == (a.block_ids[:1], 4)


def test_failed_allocation_changes_nothing() -> None:
    kv = KVCacheManager(block_size=4, num_blocks=3)
    a = Request("a", prompt_token_ids=list(range(8)))
    _admit_and_compute(kv, a)
    kv.free(a)  # two cached, free blocks
    b = Request("b", prompt_token_ids=[*range(8), 1, 2, 3, 4, 5])
    hits, _ = kv.get_computed_blocks(b)
    assert len(hits) == 2
    assert not kv.allocate_slots(b, 5, hits)  # needs 2 revived + 2 new > 3
    assert b.block_ids == [] and kv.num_free_blocks == 3
    assert kv.pool.lookup(b.block_hashes[0]) == hits[0]  # nothing evicted
    assert kv.prefix_cache_queries == 8  # failed admissions are not counted


def test_disabled_prefix_caching_never_hits() -> None:
    kv = KVCacheManager(block_size=2, num_blocks=8, enable_prefix_caching=False)
    _admit_and_compute(kv, Request("a", prompt_token_ids=[1, 2, 3, 4, 5]))
    assert kv.get_computed_blocks(Request("b", prompt_token_ids=[1, 2, 3, 4, 5])) == ([], 0)


BLOCK = 3
PREFIXES = ([1, 2, 3, 4, 5, 6], [1, 2, 3, 9, 9, 9], [7, 7, 7, 7])


class KVManagerMachine(RuleBasedStateMachine):
    """Requests with overlapping prompts and tenant salts are admitted in chunks, decoded,
    and freed. `content` is ground truth: the token written into each slot of each block."""

    @initialize(num_blocks=st.integers(2, 14))
    def setup(self, num_blocks: int) -> None:
        self.kv = KVCacheManager(BLOCK, num_blocks)
        self.live: list[Request] = []
        self.content: dict[int, list[int | None]] = {}
        self.writer_salt: dict[int, str | None] = {}
        self.hash_prefix: dict[int, tuple[str | None, tuple[int, ...]]] = {}
        self.count = 0

    def _compute(self, req: Request, n: int) -> None:
        """What the runner does: write KV for positions [computed, computed + n)."""
        for p in range(req.num_computed_tokens, req.num_computed_tokens + n):
            block = req.block_ids[p // BLOCK]
            assert self.kv.pool.ref_count(block) == 1, "writing into a shared block"
            self.content[block][p % BLOCK] = req.token_at(p)
            self.writer_salt[block] = req.cache_salt
        req.num_computed_tokens += n
        self.kv.cache_full_blocks(req)
        self._record_hashes(req)

    def _record_hashes(self, req: Request) -> None:
        tokens = req.all_token_ids
        for i, h in enumerate(req.block_hashes):
            key = (req.cache_salt, tuple(tokens[: (i + 1) * BLOCK]))
            assert self.hash_prefix.setdefault(h, key) == key, "hash collision"

    def _fresh(self, req: Request, before: set[int]) -> None:
        for b in req.block_ids:
            if b not in before:
                self.content[b] = [None] * BLOCK

    @rule(
        prefix=st.sampled_from(PREFIXES),
        tail=st.lists(st.integers(0, 3), max_size=5),
        salt=st.sampled_from([None, None, "t1"]),
        data=st.data(),
    )
    def admit(self, prefix: list[int], tail: list[int], salt: str | None, data) -> None:
        self.count += 1
        req = Request(f"r{self.count}", prompt_token_ids=prefix + tail, cache_salt=salt)
        free_before = self.kv.num_free_blocks
        hits, num_cached = self.kv.get_computed_blocks(req)
        assert num_cached == len(hits) * BLOCK < req.num_tokens
        for i, b in enumerate(hits):  # a hit serves exactly this request's tokens
            assert self.content[b] == req.token_slice(i * BLOCK, (i + 1) * BLOCK)
            assert self.writer_salt[b] == salt
        n = data.draw(st.integers(1, req.num_tokens - num_cached))
        held_by_others = {b for r in self.live for b in r.block_ids}
        if not self.kv.allocate_slots(req, n, hits):
            assert req.block_ids == [] and self.kv.num_free_blocks == free_before
            return
        assert req.block_ids[: len(hits)] == hits
        self._fresh(req, held_by_others | set(hits))
        req.num_computed_tokens = num_cached
        self.live.append(req)
        self._compute(req, n)

    @precondition(lambda self: self.live)
    @rule(data=st.data(), token=st.integers(0, 3))
    def step(self, data, token: int) -> None:
        req = data.draw(st.sampled_from(self.live))
        if req.num_computed_tokens == req.num_tokens:
            req.output_token_ids.append(token)  # a sampled token, computed next step
        n = data.draw(st.integers(1, req.num_tokens - req.num_computed_tokens))
        before, free_before = set(req.block_ids), self.kv.num_free_blocks
        if not self.kv.allocate_slots(req, n):
            assert set(req.block_ids) == before and self.kv.num_free_blocks == free_before
            return
        self._fresh(req, before)
        self._compute(req, n)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def finish(self, data) -> None:
        req = self.live.pop(data.draw(st.integers(0, len(self.live) - 1)))
        self.kv.free(req)
        assert req.block_ids == []

    @invariant()
    def consistent(self) -> None:
        pool = self.kv.pool
        refs = Counter(b for r in self.live for b in r.block_ids)
        for b in range(self.kv.num_blocks):
            assert pool.ref_count(b) == refs[b]
            assert pool.is_free(b) == (refs[b] == 0)
            h = pool.block_hash(b)
            if h is not None:  # cached blocks hold exactly the tokens their hash names
                assert pool.lookup(h) == b
                salt, prefix = self.hash_prefix[h]
                assert self.content[b] == list(prefix[-BLOCK:])
                assert self.writer_salt[b] == salt
        assert pool.num_free + sum(1 for c in refs.values() if c) == self.kv.num_blocks
        for r in self.live:
            assert len(r.block_ids) == -(-r.num_computed_tokens // BLOCK)
        assert 0 <= self.kv.prefix_cache_hits <= self.kv.prefix_cache_queries


TestKVManagerMachine = KVManagerMachine.TestCase
TestKVManagerMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
