"""Maps requests to KV blocks: prefix-cache lookup, slot allocation, caching, freeing.

Choices, documented here because the scheduler and metrics depend on them:

* Full-prompt hits: at least one token must be computed to get logits, so the lookup is
  capped at `(num_tokens - 1) // block_size` blocks. A fully cached prompt whose length is
  a multiple of the block size therefore drops its last block and recomputes it.
* Counters `prefix_cache_queries` / `prefix_cache_hits` are in tokens and counted at every
  *successful* admission, re-admission after preemption included: they measure how much
  prefill the cache saved, and a preempted request's recompute is real prefill saved.
  Failed admission attempts (pool full, retried next step) are not counted.
* Only computed, full blocks are registered (generated tokens' blocks too, so a follow-up
  turn of a chat hits the previous answer).
"""

from __future__ import annotations

from slipstream.engine.kv.block_hash import extend_block_hashes
from slipstream.engine.kv.block_pool import BlockPool
from slipstream.engine.types import Request


class KVCacheManager:
    """Owns the `BlockPool`; keeps `request.block_ids` and `request.block_hashes` current."""

    def __init__(
        self, block_size: int, num_blocks: int, enable_prefix_caching: bool = True
    ) -> None:
        if block_size <= 0:
            raise ValueError(f"block_size must be positive, got {block_size}")
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.enable_prefix_caching = enable_prefix_caching
        self.pool = BlockPool(num_blocks, enable_caching=enable_prefix_caching)
        self.prefix_cache_queries = 0
        self.prefix_cache_hits = 0
        # request_id -> how many of its leading blocks are already registered in the cache.
        self._num_cached_blocks: dict[str, int] = {}

    @property
    def usage(self) -> float:
        return self.pool.usage

    @property
    def num_free_blocks(self) -> int:
        return self.pool.num_free

    @property
    def capacity_tokens(self) -> int:
        """The most tokens one sequence can ever hold: the whole pool."""
        return self.num_blocks * self.block_size

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def get_computed_blocks(self, request: Request) -> tuple[list[int], int]:
        """Longest cached prefix of full blocks (leaving >= 1 token to compute).

        Read-only: the blocks are not held until `allocate_slots(..., computed_blocks)`.
        """
        if not self.enable_prefix_caching:
            return [], 0
        hashes = extend_block_hashes(request, self.block_size)
        max_blocks = (request.num_tokens - 1) // self.block_size
        hits: list[int] = []
        for block_hash in hashes[:max_blocks]:
            block_id = self.pool.lookup(block_hash)
            if block_id is None:
                break
            hits.append(block_id)
        return hits, len(hits) * self.block_size

    def allocate_slots(
        self, request: Request, num_new_tokens: int, computed_blocks: list[int] | None = None
    ) -> bool:
        """Grow `request.block_ids` to cover its computed tokens plus `num_new_tokens`.

        With `computed_blocks` (admission; the request must hold no blocks) the prefix-hit
        blocks become the head of its block table and count as computed tokens. Returns False
        and changes nothing when the pool cannot supply the blocks.
        """
        admitting = computed_blocks is not None
        hits = computed_blocks or []
        if admitting:
            if request.block_ids:
                raise ValueError(f"request {request.request_id} already holds blocks")
            num_computed = len(hits) * self.block_size
        else:
            num_computed = request.num_computed_tokens
        held = len(request.block_ids) + len(hits)
        num_needed = max(self.blocks_for(num_computed + num_new_tokens) - held, 0)
        # Touching a free cached block takes it out of the free queue too.
        num_revived = sum(1 for b in hits if self.pool.ref_count(b) == 0)
        if num_needed + num_revived > self.pool.num_free:
            return False
        if admitting:
            self.pool.touch(hits)
            request.block_ids = list(hits)
            self._num_cached_blocks[request.request_id] = len(hits)
            if self.enable_prefix_caching:
                self.prefix_cache_queries += request.num_tokens
                self.prefix_cache_hits += num_computed
        new_blocks = self.pool.allocate(num_needed)
        assert new_blocks is not None  # checked above
        request.block_ids.extend(new_blocks)
        return True

    def cache_full_blocks(self, request: Request) -> None:
        """Register the request's newly completed (full and computed) blocks."""
        if not self.enable_prefix_caching:
            return
        num_full = request.num_computed_tokens // self.block_size
        start = self._num_cached_blocks.get(request.request_id, 0)
        if num_full <= start:
            return
        hashes = extend_block_hashes(request, self.block_size)
        for i in range(start, num_full):
            self.pool.cache_block(request.block_ids[i], hashes[i])
        self._num_cached_blocks[request.request_id] = num_full

    def free(self, request: Request) -> None:
        """Release all of the request's blocks, tail first, so its head is evicted last."""
        self.pool.free(reversed(request.block_ids))
        request.block_ids = []
        self._num_cached_blocks.pop(request.request_id, None)
