"""BlockPool: unit behaviour plus a Hypothesis state machine checked against a plain model."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from slipstream.engine.kv.block_pool import BlockPool


def test_allocate_until_exhausted_then_none() -> None:
    pool = BlockPool(4)
    assert pool.allocate(3) == [0, 1, 2]
    assert pool.num_free == 1 and pool.usage == pytest.approx(0.75)
    assert pool.allocate(2) is None
    assert pool.num_free == 1  # a failed allocation changes nothing
    assert pool.allocate(1) == [3]
    assert pool.usage == 1.0


def test_freed_cached_blocks_survive_until_reused_and_tail_is_evicted_first() -> None:
    pool = BlockPool(4)
    seq = pool.allocate(3)
    assert seq is not None
    for block_id, h in zip(seq, (100, 101, 102), strict=True):
        assert pool.cache_block(block_id, h)
    pool.free(reversed(seq))  # tail first
    # Unreferenced but still cached: a prefix hit can revive them.
    assert pool.num_free == 4 and pool.lookup(100) == seq[0]
    # The never-used block 3 is worthless and goes first, then the sequence's tail.
    assert pool.allocate(2) == [3, seq[2]]
    assert pool.lookup(102) is None and pool.block_hash(seq[2]) is None
    assert pool.lookup(100) == seq[0] and pool.lookup(101) == seq[1]
    pool.touch([seq[0]])
    assert pool.ref_count(seq[0]) == 1 and not pool.is_free(seq[0])
    assert pool.allocate(1) == [seq[1]]  # the head, held again, was not evictable
    assert pool.lookup(100) == seq[0]


def test_hash_maps_to_one_block_and_double_free_is_an_error() -> None:
    pool = BlockPool(2)
    a, b = pool.allocate(2) or []
    assert pool.cache_block(a, 7)
    assert not pool.cache_block(b, 7)  # first block stays canonical
    assert pool.lookup(7) == a and pool.block_hash(b) is None
    pool.free([a])
    with pytest.raises(ValueError):
        pool.free([a])
    with pytest.raises(ValueError):
        pool.cache_block(a, 8)  # not held


def test_caching_disabled_registers_nothing() -> None:
    pool = BlockPool(2, enable_caching=False)
    (a,) = pool.allocate(1) or []
    assert not pool.cache_block(a, 1)
    assert pool.lookup(1) is None


class BlockPoolMachine(RuleBasedStateMachine):
    """Random allocate/free/cache/hit sequences; the model is a list of holders and an LRU list."""

    @initialize(num_blocks=st.integers(1, 10))
    def setup(self, num_blocks: int) -> None:
        self.n = num_blocks
        self.pool = BlockPool(num_blocks)
        self.holders: list[list[int]] = []
        self.model_free: list[int] = list(range(num_blocks))  # front = evicted next
        self.model_hash: dict[int, int] = {}  # block -> hash
        self.next_hash = 0

    def _refs(self) -> Counter[int]:
        return Counter(b for h in self.holders for b in h)

    @rule(n=st.integers(0, 4))
    def allocate(self, n: int) -> None:
        got = self.pool.allocate(n)
        if n > len(self.model_free):
            assert got is None
            return
        expected, self.model_free = self.model_free[:n], self.model_free[n:]
        assert got == expected
        for b in got:
            self.model_hash.pop(b, None)
        self.holders.append(got)

    @precondition(lambda self: self.holders)
    @rule(data=st.data())
    def free(self, data: st.DataObject) -> None:
        blocks = self.holders.pop(data.draw(st.integers(0, len(self.holders) - 1)))
        self.pool.free(reversed(blocks))
        refs = self._refs()
        for b in reversed(blocks):
            if refs[b] == 0 and b not in self.model_free:
                if b in self.model_hash:
                    self.model_free.append(b)
                else:
                    self.model_free.insert(0, b)

    @precondition(lambda self: self.holders)
    @rule(data=st.data(), reuse=st.booleans())
    def cache(self, data: st.DataObject, reuse: bool) -> None:
        holder = data.draw(st.sampled_from(self.holders))
        block = data.draw(st.sampled_from(holder)) if holder else None
        if block is None:
            return
        if reuse and self.model_hash:
            h = data.draw(st.sampled_from(sorted(self.model_hash.values())))
        else:
            h, self.next_hash = self.next_hash, self.next_hash + 1
        ok = self.pool.cache_block(block, h)
        if block in self.model_hash:
            assert ok == (self.model_hash[block] == h)
        elif h in self.model_hash.values():
            assert not ok
        else:
            assert ok
            self.model_hash[block] = h

    @precondition(lambda self: self.model_hash)
    @rule(data=st.data())
    def prefix_hit(self, data: st.DataObject) -> None:
        block, h = data.draw(st.sampled_from(sorted(self.model_hash.items())))
        assert self.pool.lookup(h) == block
        self.pool.touch([block])
        if block in self.model_free:
            self.model_free.remove(block)
        self.holders.append([block])

    @invariant()
    def consistent(self) -> None:
        refs = self._refs()
        for b in range(self.n):
            assert self.pool.ref_count(b) == refs[b]
            assert self.pool.is_free(b) == (refs[b] == 0)  # held blocks never evictable
            assert self.pool.block_hash(b) == self.model_hash.get(b)
        assert self.pool.num_free + sum(1 for b in range(self.n) if refs[b]) == self.n
        assert self.pool.free_block_ids() == self.model_free
        assert self.pool.num_cached == len(self.model_hash)
        for b, h in self.model_hash.items():
            assert self.pool.lookup(h) == b


TestBlockPoolMachine = BlockPoolMachine.TestCase
TestBlockPoolMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
