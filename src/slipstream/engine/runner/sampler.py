"""Batched sampling: penalties, temperature, top-k, top-p, min-p, seeds, logprobs.

Greedy rows take the argmax of the (penalised) logits. Random rows use the exponential-race
trick (argmax of p / E with E ~ Exp(1)), which equals sampling from p; seeded rows draw their
noise from their own generator, so a seeded request gives the same tokens whatever else is in
the batch. Logprobs are those of the raw model distribution (as in vLLM and OpenAI).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from slipstream.engine.types import SampledToken, SamplingParams, TokenLogprob


@dataclass
class SampleRow:
    params: SamplingParams
    prompt_token_ids: list[int]
    output_token_ids: list[int]
    generator: torch.Generator | None


class Sampler:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(0)

    def sample(self, logits: torch.Tensor, rows: list[SampleRow]) -> list[SampledToken]:
        """logits: float32 [len(rows), vocab]."""
        raw = logits
        want_logprobs = any(r.params.logprobs is not None for r in rows)
        logprobs = torch.log_softmax(raw, dim=-1) if want_logprobs else None
        logits = self._apply_penalties(logits, rows)
        chosen = self._choose(logits, rows)
        chosen_list = chosen.tolist()
        out: list[SampledToken] = []
        for i, (row, tok) in enumerate(zip(rows, chosen_list, strict=True)):
            lp = None
            if logprobs is not None and row.params.logprobs is not None:
                k = row.params.logprobs
                top: tuple[tuple[int, float], ...] = ()
                if k > 0:
                    vals, idx = torch.topk(logprobs[i], k)
                    top = tuple(zip(idx.tolist(), vals.tolist(), strict=True))
                lp = TokenLogprob(tok, float(logprobs[i, tok]), top)
            out.append(SampledToken(tok, lp))
        return out

    def _apply_penalties(self, logits: torch.Tensor, rows: list[SampleRow]) -> torch.Tensor:
        if not any(r.params.needs_penalties for r in rows):
            return logits
        logits = logits.clone()
        vocab = logits.shape[-1]
        for i, row in enumerate(rows):
            p = row.params
            if not p.needs_penalties:
                continue
            if p.repetition_penalty != 1.0:
                seen = torch.tensor(
                    sorted(set(row.prompt_token_ids) | set(row.output_token_ids)),
                    dtype=torch.long,
                    device=self.device,
                )
                if seen.numel():
                    vals = logits[i, seen]
                    vals = torch.where(
                        vals > 0, vals / p.repetition_penalty, vals * p.repetition_penalty
                    )
                    logits[i, seen] = vals
            if (p.presence_penalty or p.frequency_penalty) and row.output_token_ids:
                counts = torch.zeros(vocab, dtype=logits.dtype, device=self.device)
                ids = torch.tensor(row.output_token_ids, dtype=torch.long, device=self.device)
                counts.scatter_add_(0, ids, torch.ones_like(ids, dtype=logits.dtype))
                logits[i] -= p.frequency_penalty * counts + p.presence_penalty * (counts > 0)
        return logits

    def _choose(self, logits: torch.Tensor, rows: list[SampleRow]) -> torch.Tensor:
        greedy = logits.argmax(dim=-1)
        random_rows = [i for i, r in enumerate(rows) if not r.params.greedy]
        if not random_rows:
            return greedy
        idx = torch.tensor(random_rows, dtype=torch.long, device=self.device)
        sub = logits[idx]
        temps = torch.tensor(
            [rows[i].params.temperature for i in random_rows], device=self.device
        ).unsqueeze(1)
        sub = sub / temps
        sub = self._filter(sub, [rows[i].params for i in random_rows])
        probs = torch.softmax(sub, dim=-1)
        noise = torch.empty_like(probs)
        for j, i in enumerate(random_rows):
            gen = rows[i].generator or self.generator
            noise[j].exponential_(generator=gen)
        picked = (probs / noise).argmax(dim=-1)
        greedy[idx] = picked
        return greedy

    def _filter(self, logits: torch.Tensor, params: list[SamplingParams]) -> torch.Tensor:
        neg_inf = torch.finfo(logits.dtype).min
        vocab = logits.shape[-1]
        top_k = [p.top_k if 0 < p.top_k < vocab else vocab for p in params]
        top_p = [p.top_p for p in params]
        min_p = [p.min_p for p in params]
        if any(k < vocab for k in top_k) or any(p < 1.0 for p in top_p):
            sorted_logits, sorted_idx = logits.sort(dim=-1, descending=True)
            keep = torch.ones_like(sorted_logits, dtype=torch.bool)
            if any(k < vocab for k in top_k):
                ks = torch.tensor(top_k, device=self.device).unsqueeze(1)
                keep &= torch.arange(vocab, device=self.device).unsqueeze(0) < ks
            if any(p < 1.0 for p in top_p):
                masked = sorted_logits.masked_fill(~keep, neg_inf)
                probs = torch.softmax(masked, dim=-1)
                before = probs.cumsum(dim=-1) - probs
                ps = torch.tensor(top_p, device=self.device).unsqueeze(1)
                keep &= before < ps
            keep[:, 0] = True
            mask = torch.zeros_like(keep).scatter(1, sorted_idx, keep)
            logits = logits.masked_fill(~mask, neg_inf)
        if any(m > 0 for m in min_p):
            probs = torch.softmax(logits, dim=-1)
            top = probs.max(dim=-1, keepdim=True).values
            ms = torch.tensor(min_p, device=self.device).unsqueeze(1)
            logits = logits.masked_fill(probs < ms * top, neg_inf)
        return logits
