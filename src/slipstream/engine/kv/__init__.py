"""Paged KV cache bookkeeping (pure Python, no torch): block pool, block hashes, manager."""

from slipstream.engine.kv.block_hash import extend_block_hashes, hash_block, root_hash
from slipstream.engine.kv.block_pool import BlockPool, KVBlock
from slipstream.engine.kv.kv_cache_manager import KVCacheManager

__all__ = [
    "BlockPool",
    "KVBlock",
    "KVCacheManager",
    "extend_block_hashes",
    "hash_block",
    "root_hash",
]
