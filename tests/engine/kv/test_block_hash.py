"""Chained block hashes: content- and salt-sensitive, incremental, prefix-chained."""

from __future__ import annotations

from slipstream.engine.kv.block_hash import extend_block_hashes, hash_block, root_hash
from slipstream.engine.types import Request


def test_hash_depends_on_parent_tokens_and_salt() -> None:
    root = root_hash(None)
    assert hash_block(root, [1, 2]) == hash_block(root, [1, 2])
    assert hash_block(root, [1, 2]) != hash_block(root, [2, 1])
    assert hash_block(root, [1, 2]) != hash_block(hash_block(root, [0, 0]), [1, 2])
    assert len({root_hash(None), root_hash(""), root_hash("a"), root_hash("b")}) == 4


def test_extend_is_incremental_and_covers_only_full_blocks() -> None:
    req = Request("r", prompt_token_ids=list(range(10)))
    hashes = extend_block_hashes(req, 4)
    assert len(hashes) == 2 and req.block_hashes is hashes
    first = list(hashes)
    req.output_token_ids += [10, 11]
    extend_block_hashes(req, 4)
    assert req.block_hashes[:2] == first and len(req.block_hashes) == 3
    # The same tokens arriving as one prompt give the same chain: multi-turn chats hit.
    again = Request("s", prompt_token_ids=list(range(12)))
    assert extend_block_hashes(again, 4) == req.block_hashes
    salted = Request("t", prompt_token_ids=list(range(12)), cache_salt="tenant-a")
    assert not set(extend_block_hashes(salted, 4)) & set(req.block_hashes)


def test_shared_prefix_shares_hashes_until_first_difference() -> None:
    a = Request("a", prompt_token_ids=[1, 2, 3, 4, 5, 6, 7, 8, 9])
    b = Request("b", prompt_token_ids=[1, 2, 3, 4, 5, 6, 0, 8, 9])
    ha, hb = extend_block_hashes(a, 3), extend_block_hashes(b, 3)
    assert ha[:2] == hb[:2]
    assert ha[2] != hb[2]
