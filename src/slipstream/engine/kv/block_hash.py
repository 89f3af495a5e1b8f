"""Chained content hashes of full KV blocks, the keys of the prefix cache.

Block i's hash covers its own tokens *and* (through its parent) every token before it, so
equal hashes mean equal prefixes, not just equal blocks. We use SHA-256 (kept whole, as a
256-bit int) rather than Python's `hash()`: a collision would silently serve another
prompt's KV, so the key must be collision-safe, and it must not vary between processes.
The request's `cache_salt` seeds the chain, so tenants with different salts never share
a block even for identical prompts.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Sequence

from slipstream.engine.types import Request

_DIGEST_BYTES = 32


def root_hash(cache_salt: str | None) -> int:
    """The parent of a request's first block: distinct per salt (None and "" differ)."""
    seed = b"\x00" if cache_salt is None else b"\x01" + cache_salt.encode("utf-8")
    return int.from_bytes(hashlib.sha256(b"slipstream.kv.root" + seed).digest(), "big")


def hash_block(parent_hash: int, token_ids: Sequence[int]) -> int:
    """hash(parent_hash, tokens) — chained so a hit on block i implies blocks 0..i match."""
    h = hashlib.sha256(parent_hash.to_bytes(_DIGEST_BYTES, "big"))
    h.update(array("q", token_ids).tobytes())
    return int.from_bytes(h.digest(), "big")


def extend_block_hashes(request: Request, block_size: int) -> list[int]:
    """Append hashes for the request's newly *full* blocks to `request.block_hashes`.

    Incremental: only blocks past the ones already hashed are hashed, so calling this every
    step costs O(new tokens), never O(prompt). Tokens of a request never change once known,
    which is what makes keeping the hashes across preemption safe.
    """
    hashes = request.block_hashes
    num_full = request.num_tokens // block_size
    if len(hashes) >= num_full:
        return hashes
    parent = hashes[-1] if hashes else root_hash(request.cache_salt)
    for i in range(len(hashes), num_full):
        parent = hash_block(parent, request.token_slice(i * block_size, (i + 1) * block_size))
        hashes.append(parent)
    return hashes
