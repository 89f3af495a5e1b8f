"""Per-step attention metadata: where each new token's K/V goes and which slots each query reads.

Built once per step by the runner and shared by every layer. Decode sequences (one new token)
come first in the flattened batch so they form one padded, batched attention call; prefill
chunks (several new tokens) follow, one call each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class PrefillChunk:
    token_start: int  # offset of the chunk's first token in the flattened batch
    num_tokens: int
    context_slots: torch.Tensor  # [context_len] KV slots for positions 0 .. start_pos+num_tokens-1
    mask: torch.Tensor | None  # [num_tokens, context_len] bool; None means plain causal from 0


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor  # [T] KV slot of every new token
    num_decode: int = 0
    decode_slots: torch.Tensor | None = None  # [B, Lmax] padded context slots
    decode_mask: torch.Tensor | None = None  # [B, 1, 1, Lmax] True where a key is visible
    prefills: list[PrefillChunk] = field(default_factory=list)


def slots_for(block_ids: list[int], block_size: int, start: int, end: int) -> list[int]:
    """KV slot indices of positions [start, end) for a sequence with this block table."""
    return [block_ids[p // block_size] * block_size + p % block_size for p in range(start, end)]


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
        max_len = max(pos for _, pos in decode) + 1
        rows: list[list[int]] = []
        lens: list[int] = []
        for blocks, pos in decode:
            ctx = slots_for(blocks, block_size, 0, pos + 1)
            slot_mapping.append(ctx[-1])
            lens.append(pos + 1)
            rows.append(ctx + [0] * (max_len - len(ctx)))
        meta.decode_slots = torch.tensor(rows, dtype=torch.long, device=device)
        lens_t = torch.tensor(lens, dtype=torch.long, device=device)
        visible = torch.arange(max_len, device=device).unsqueeze(0) < lens_t.unsqueeze(1)
        meta.decode_mask = visible[:, None, None, :]
    offset = num_decode
    for blocks, start, n in prefill:
        ctx = slots_for(blocks, block_size, 0, start + n)
        slot_mapping.extend(ctx[start:])
        mask = None
        if start > 0:
            q_pos = torch.arange(start, start + n, device=device).unsqueeze(1)
            k_pos = torch.arange(start + n, device=device).unsqueeze(0)
            mask = k_pos <= q_pos
        meta.prefills.append(
            PrefillChunk(
                token_start=offset,
                num_tokens=n,
                context_slots=torch.tensor(ctx, dtype=torch.long, device=device),
                mask=mask,
            )
        )
        offset += n
    meta.slot_mapping = torch.tensor(slot_mapping, dtype=torch.long, device=device)
    return meta
