"""ModelRunner: StepPlan → tensors → forward → sampled tokens.

Owns the model weights, the paged KV cache tensors and per-request sampling generators.
Everything the scheduler decided arrives in the plan; the runner makes no scheduling choices.
"""

from __future__ import annotations

import os

import torch

from slipstream.engine.attention.cpu_kernels import load_cpu_kernels
from slipstream.engine.attention.metadata import build_metadata
from slipstream.engine.config import EngineConfig
from slipstream.engine.layers.linear import int8_kernel_available
from slipstream.engine.loader import LoadedModel
from slipstream.engine.models.llama import LlamaModel
from slipstream.engine.runner.device import resolve_device, resolve_dtype
from slipstream.engine.runner.sampler import Sampler, SampleRow
from slipstream.engine.types import SampledToken, ScheduledSeq, StepPlan


def default_cpu_threads() -> int:
    """All cores but one: the HTTP process and clients need a core, and an OpenMP team that
    shares its cores with another busy process stalls at every barrier (measured on the
    2-core box: 2 threads ran 2-6x slower than 1 whenever anything else was running)."""
    return max(1, len(os.sched_getaffinity(0)) - 1)


# Up to this many tokens per step the int8 weight-only path wins on CPU (measured crossover).
INT8_AUTO_ROWS = 4


class ModelRunner:
    def __init__(self, loaded: LoadedModel, config: EngineConfig, max_model_len: int) -> None:
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        if self.device.type == "cpu":
            torch.set_num_threads(config.num_threads or default_cpu_threads())
        self.block_size = config.cache.block_size
        use_kernel = self.device.type == "cpu" and config.attention_backend in (
            "auto",
            "cpu_kernel",
        )
        if use_kernel:
            use_kernel = load_cpu_kernels()
            if not use_kernel and config.attention_backend == "cpu_kernel":
                raise RuntimeError(
                    "attention_backend='cpu_kernel' was requested but it failed to build"
                )
        self.attention_backend = "cpu_kernel" if use_kernel else "torch"
        rows = config.int8_small_batch_rows
        if rows is None:
            rows = INT8_AUTO_ROWS if int8_kernel_available(self.dtype, self.device) else 0
        elif rows > 0 and not int8_kernel_available(self.dtype, self.device):
            raise ValueError("int8_small_batch_rows needs a CPU device and dtype bfloat16")
        self.int8_small_batch_rows = rows
        self.model = LlamaModel(
            loaded.spec,
            loaded.weights,
            self.device,
            self.dtype,
            max_model_len,
            use_cpu_kernel=use_kernel,
            int8_max_rows=rows,
        )
        per_token = self.model.kv_bytes_per_token(self.dtype)
        if config.cache.num_blocks is not None:
            self.num_blocks = config.cache.num_blocks
        else:
            budget = int(config.cache.kv_cache_memory_gib * (1 << 30))
            self.num_blocks = max(1, budget // (per_token * self.block_size))
        spec = loaded.spec
        shape = (self.num_blocks, self.block_size, spec.num_kv_heads, spec.head_dim)
        self.kv_caches = [
            (
                torch.zeros(shape, device=self.device, dtype=self.dtype),
                torch.zeros(shape, device=self.device, dtype=self.dtype),
            )
            for _ in range(spec.num_layers)
        ]
        self.sampler = Sampler(self.device)
        self.sampler.generator.manual_seed(config.seed)
        self.generators: dict[str, torch.Generator] = {}

    def release(self, request_ids: list[str]) -> None:
        for rid in request_ids:
            self.generators.pop(rid, None)

    def _generator(self, seq: ScheduledSeq) -> torch.Generator | None:
        seed = seq.request.sampling.seed
        if seed is None:
            return None
        gen = self.generators.get(seq.request.request_id)
        if gen is None:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(seed)
            self.generators[seq.request.request_id] = gen
        return gen

    @torch.inference_mode()
    def execute(self, plan: StepPlan) -> dict[str, SampledToken]:
        decode = [s for s in plan.seqs if s.num_tokens == 1 and s.start_pos > 0]
        prefill = [s for s in plan.seqs if not (s.num_tokens == 1 and s.start_pos > 0)]
        ordered = decode + prefill
        input_ids: list[int] = []
        positions: list[int] = []
        for s in ordered:
            input_ids.extend(s.token_ids)
            positions.extend(range(s.start_pos, s.start_pos + s.num_tokens))
        meta = build_metadata(
            [(s.request.block_ids, s.start_pos) for s in decode],
            [(s.request.block_ids, s.start_pos, s.num_tokens) for s in prefill],
            self.block_size,
            self.device,
        )
        ids_t = torch.tensor(input_ids, dtype=torch.long, device=self.device)
        pos_t = torch.tensor(positions, dtype=torch.long, device=self.device)
        hidden = self.model.forward(ids_t, pos_t, self.kv_caches, meta)

        sample_idx: list[int] = []
        sample_seqs: list[ScheduledSeq] = []
        offset = 0
        for s in ordered:
            offset += s.num_tokens
            if s.sample:
                sample_idx.append(offset - 1)
                sample_seqs.append(s)
        if not sample_seqs:
            return {}
        idx_t = torch.tensor(sample_idx, dtype=torch.long, device=self.device)
        logits = self.model.logits(hidden[idx_t])
        rows = [
            SampleRow(
                params=s.request.sampling,
                prompt_token_ids=s.request.prompt_token_ids,
                output_token_ids=s.request.output_token_ids,
                generator=self._generator(s),
            )
            for s in sample_seqs
        ]
        tokens = self.sampler.sample(logits, rows)
        return {s.request.request_id: t for s, t in zip(sample_seqs, tokens, strict=True)}
