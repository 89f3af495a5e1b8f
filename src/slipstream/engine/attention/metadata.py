"""Per-step attention metadata: where each new token's K/V goes and which blocks each query reads.

Built once per step by the runner and shared by every layer. Decode sequences (one new token)
come first in the flattened batch so they form one batched attention call; prefill chunks
(several new tokens) follow, one call each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class PrefillChunk:
    token_start: int  # offset of the chunk's first token in the flattened batch
    num_tokens: int
    context_len: int  # start_pos + num_tokens
    block_ids: torch.Tensor  # [ceil(context_len / block_size)]
    mask: torch.Tensor | None  # [num_tokens, context_len] bool; None means plain causal from 0


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor  # [T] KV slot (block * block_size + offset) of every new token
    num_decode: int = 0
    decode_block_tables: torch.Tensor | None = None  # [B, max_blocks] int64, padded with 0
    decode_seq_lens: torch.Tensor | None = None  # [B] int64, context length including the new token
    prefills: list[PrefillChunk] = field(default_factory=list)


def build_metadata(
    decode: list[tuple[list[int], int]],
    prefill: list[tuple[list[int], int, int]],
    block_size: int,
    device: torch.device,
) -> AttentionMetadata:
    """decode: (block_ids, position) per decode seq; prefill: (block_ids, start_pos, n) per chunk."""
    slot_mapping: list[int] = []
    num_decode = len(decode)
    meta = AttentionMetadata(slot_mapping=torch.empty(0), num_decode=num_decode)
    if num_decode:
        max_blocks = max(pos // block_size + 1 for _, pos in decode)
        tables: list[list[int]] = []
        lens: list[int] = []
        for blocks, pos in decode:
            n_blocks = pos // block_size + 1
            slot_mapping.append(blocks[pos // block_size] * block_size + pos % block_size)
            lens.append(pos + 1)
            tables.append(blocks[:n_blocks] + [0] * (max_blocks - n_blocks))
        meta.decode_block_tables = torch.tensor(tables, dtype=torch.long, device=device)
        meta.decode_seq_lens = torch.tensor(lens, dtype=torch.long, device=device)
    offset = num_decode
    for blocks, start, n in prefill:
        end = start + n
        slot_mapping.extend(
            blocks[p // block_size] * block_size + p % block_size for p in range(start, end)
        )
        mask = None
        if start > 0:
            q_pos = torch.arange(start, end, device=device).unsqueeze(1)
            k_pos = torch.arange(end, device=device).unsqueeze(0)
            mask = k_pos <= q_pos
        n_blocks = (end + block_size - 1) // block_size
        meta.prefills.append(
            PrefillChunk(
                token_start=offset,
                num_tokens=n,
                context_len=end,
                block_ids=torch.tensor(blocks[:n_blocks], dtype=torch.long, device=device),
                mask=mask,
            )
        )
        offset += n
    meta.slot_mapping = torch.tensor(slot_mapping, dtype=torch.long, device=device)
    return meta
