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
from slipstream.engine.layers.linear import int8_kernel_available, q8_kernel_available
from slipstream.engine.loader import LoadedModel
from slipstream.engine.models.llama import LlamaModel
from slipstream.engine.runner.device import resolve_device, resolve_dtype, resolve_kv_dtype
from slipstream.engine.runner.sampler import Sampler, SampleRow
from slipstream.engine.runner.threads import ThreadTuner
from slipstream.engine.types import SampledToken, ScheduledSeq, StepPlan


def cpu_thread_candidates(configured: int | None) -> list[int]:
    """Thread counts the tuner may pick: the configured one, or all cores and all but one
    (see runner/threads.py for why this is measured per step rather than fixed)."""
    if configured:
        return [configured]
    cores = len(os.sched_getaffinity(0))
    return sorted({max(1, cores - 1), cores})


# Up to this many tokens per step the int8 path wins on CPU (measured crossovers: bf16 with
# torch's weight-only kernel, float32 with the block-int8 kernel; docs/benchmarks.md).
INT8_AUTO_ROWS = {torch.bfloat16: 4, torch.float32: 32}


def auto_int8_rows(config: EngineConfig, dtype: torch.dtype, device: torch.device) -> int:
    """Rows for the int8 path when the config leaves it to us.

    float32 chosen by `dtype="auto"` (a CPU without fast bf16) gets the block-int8 kernel; a
    float32 the user asked for by name stays exact, as the parity tests expect.
    """
    if dtype == torch.float32 and config.dtype != "auto":
        return 0
    if dtype not in INT8_AUTO_ROWS or not int8_kernel_available(dtype, device):
        return 0
    return INT8_AUTO_ROWS[dtype]


class ModelRunner:
    def __init__(self, loaded: LoadedModel, config: EngineConfig, max_model_len: int) -> None:
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(
            config.dtype,
            self.device,
            block_weights=self.device.type == "cpu"
            and loaded.block_quantized
            and q8_kernel_available(),
        )
        candidates = [1]
        if self.device.type == "cpu":
            candidates = cpu_thread_candidates(config.num_threads)
            torch.set_num_threads(candidates[0])
        self.threads = ThreadTuner(candidates)
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
        if config.activation_bits not in (8, 16):
            raise ValueError(f"activation_bits must be 8 or 16, got {config.activation_bits}")
        rows = config.int8_small_batch_rows
        if rows is None:
            rows = auto_int8_rows(config, self.dtype, self.device)
        elif rows > 0 and not int8_kernel_available(self.dtype, self.device):
            raise ValueError(
                "int8_small_batch_rows needs a CPU device, dtype bfloat16 or float32, and (for "
                "float32) the C++ block-int8 kernel, which did not build here"
            )
        self.int8_small_batch_rows = rows
        self.model = LlamaModel(
            loaded.spec,
            loaded.weights,
            self.device,
            self.dtype,
            max_model_len,
            use_cpu_kernel=use_kernel,
            int8_max_rows=rows,
            # the fused float32 ops come with the block-int8 kernel: same build, same trade
            fused_cpu_ops=rows > 0 and self.dtype == torch.float32,
            act_bits=config.activation_bits,
        )
        self.kv_dtype = resolve_kv_dtype(
            config.cache.kv_cache_dtype,
            self.dtype,
            fast_cpu_path=rows > 0 and self.dtype == torch.float32,
        )
        per_token = self.model.kv_bytes_per_token(self.kv_dtype)
        if config.cache.num_blocks is not None:
            self.num_blocks = config.cache.num_blocks
        else:
            budget = int(config.cache.kv_cache_memory_gib * (1 << 30))
            self.num_blocks = max(1, budget // (per_token * self.block_size))
        spec = loaded.spec
        shape = (self.num_blocks, self.block_size, spec.num_kv_heads, spec.head_dim)
        self.kv_caches = [
            (
                torch.zeros(shape, device=self.device, dtype=self.kv_dtype),
                torch.zeros(shape, device=self.device, dtype=self.kv_dtype),
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

    def execute(self, plan: StepPlan) -> dict[str, SampledToken]:
        with self.threads.step(sum(s.num_tokens for s in plan.seqs)):
            return self._execute(plan)

    @torch.inference_mode()
    def _execute(self, plan: StepPlan) -> dict[str, SampledToken]:
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
