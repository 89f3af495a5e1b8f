"""A fixed pool of KV block ids with reference counts and an LRU queue of free blocks.

Freed blocks keep their content hash: until the pool hands them out again, a later request
with the same prefix can revive them (`touch`) instead of recomputing. The free queue is
ordered for eviction: uncached blocks (worthless) first, then cached blocks from least to
most recently freed. Every operation is O(1) per block because it runs every engine step.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class KVBlock:
    """Bookkeeping for one physical block of the paged KV cache."""

    block_id: int
    ref_cnt: int = 0
    # Chained content hash while the block is registered in the prefix cache.
    block_hash: int | None = None


class BlockPool:
    """Block ids 0..num_blocks-1: ref counts, eviction order, and the hash → block map.

    Invariants: num_free + num_used == num_blocks; a block with ref_cnt > 0 is never in the
    free queue; a hash maps to at most one block, and that block carries the hash.
    """

    def __init__(self, num_blocks: int, enable_caching: bool = True) -> None:
        if num_blocks <= 0:
            raise ValueError(f"num_blocks must be positive, got {num_blocks}")
        self.num_blocks = num_blocks
        self.enable_caching = enable_caching
        self.blocks = [KVBlock(i) for i in range(num_blocks)]
        # Front = next to evict. Values unused: an OrderedDict is an O(1) linked set.
        self._free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self._cached: dict[int, int] = {}

    @property
    def num_free(self) -> int:
        """Blocks that `allocate` can hand out, cached-but-unreferenced ones included."""
        return len(self._free)

    @property
    def num_used(self) -> int:
        return self.num_blocks - len(self._free)

    @property
    def usage(self) -> float:
        """Fraction of blocks referenced by live requests."""
        return self.num_used / self.num_blocks

    @property
    def num_cached(self) -> int:
        return len(self._cached)

    def ref_count(self, block_id: int) -> int:
        return self.blocks[block_id].ref_cnt

    def is_free(self, block_id: int) -> bool:
        return block_id in self._free

    def block_hash(self, block_id: int) -> int | None:
        return self.blocks[block_id].block_hash

    def free_block_ids(self) -> list[int]:
        """The free queue in eviction order (for tests and debugging; O(n))."""
        return list(self._free)

    def lookup(self, block_hash: int) -> int | None:
        """The block holding this content hash, referenced or not, if any."""
        return self._cached.get(block_hash)

    def allocate(self, n: int) -> list[int] | None:
        """Take `n` blocks (ref 1) from the front of the free queue; None if too few.

        A taken block loses its cached hash: its content is about to be overwritten.
        """
        if n < 0:
            raise ValueError(f"cannot allocate {n} blocks")
        if n > len(self._free):
            return None
        out: list[int] = []
        for _ in range(n):
            block_id, _unused = self._free.popitem(last=False)
            block = self.blocks[block_id]
            if block.block_hash is not None:
                del self._cached[block.block_hash]
                block.block_hash = None
            block.ref_cnt = 1
            out.append(block_id)
        return out

    def touch(self, block_ids: Iterable[int]) -> None:
        """A prefix hit: one more holder for each block; revived blocks leave the free queue."""
        for block_id in block_ids:
            block = self.blocks[block_id]
            if block.ref_cnt == 0:
                if block.block_hash is None:
                    raise ValueError(f"block {block_id} is free and uncached: cannot touch it")
                del self._free[block_id]
            block.ref_cnt += 1

    def free(self, block_ids: Iterable[int]) -> None:
        """Drop one reference per block; blocks reaching 0 join the free queue in the given order.

        Callers pass a sequence's blocks tail-first so its tail is evicted before its head
        (the head is the part other requests are most likely to share). Uncached blocks go
        to the front: nothing is lost by reusing them first.
        """
        for block_id in block_ids:
            block = self.blocks[block_id]
            if block.ref_cnt <= 0:
                raise ValueError(f"block {block_id} freed more times than it was held")
            block.ref_cnt -= 1
            if block.ref_cnt == 0:
                self._free[block_id] = None
                if block.block_hash is None:
                    self._free.move_to_end(block_id, last=False)

    def cache_block(self, block_id: int, block_hash: int) -> bool:
        """Register a full, computed block under its content hash; False if not registered.

        Not registered when caching is off, or when another block already holds this hash
        (two requests computed the same prefix at once): the first one stays canonical.
        """
        if not self.enable_caching:
            return False
        block = self.blocks[block_id]
        if block.ref_cnt <= 0:
            raise ValueError(f"block {block_id} is not held: only computed blocks are cached")
        if block.block_hash is not None:
            return block.block_hash == block_hash
        if block_hash in self._cached:
            return False
        block.block_hash = block_hash
        self._cached[block_hash] = block_id
        return True

    def reset_prefix_cache(self) -> None:
        """Forget every cached hash (e.g. after weights change); held blocks stay held."""
        for block in self.blocks:
            block.block_hash = None
        self._cached.clear()
