"""Frozen engine configuration: what the scheduler, KV cache and runner are built from."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CacheConfig:
    """Paged KV cache shape.

    `num_blocks` fixes the pool size (tests use tiny pools to force preemption); when it is
    None the runner sizes the pool from `kv_cache_memory_gib`.
    """

    block_size: int = 16
    num_blocks: int | None = None
    kv_cache_memory_gib: float = 1.0
    enable_prefix_caching: bool = True
    # auto: the compute dtype, except float16 on the CPU block-kernel path (dtype "auto" with
    # a quantized GGUF), as llama.cpp stores its cache: decode attention there reads the
    # whole cache from DRAM every step, so half the bytes is nearly half the time.
    kv_cache_dtype: str = "auto"  # auto | float32 | bfloat16 | float16


@dataclass(frozen=True)
class SchedulerConfig:
    """Token-budget scheduler limits (vLLM V1 style: one budget for prefill and decode)."""

    max_num_batched_tokens: int = 512
    max_num_seqs: int = 64
    # Prompts longer than this are chunked even when the budget would allow more, so a
    # long prompt cannot stall running decodes for a whole step.
    long_prefill_token_threshold: int = 0


@dataclass(frozen=True)
class EngineConfig:
    model: str = "smollm2-135m"
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    device: str = "auto"  # auto | cpu | cuda
    max_model_len: int | None = None  # None: the model's own context length (capped at 8192)
    seed: int = 0
    # torch intra-op threads on CPU; None: measured per step between all cores and all but one
    num_threads: int | None = None
    # auto: the C++ paged decode kernel on CPU when it builds, else the torch reference;
    # torch: always the reference; cpu_kernel: the kernel or fail.
    attention_backend: str = "auto"
    # Steps with at most this many tokens use an int8 weight-only copy of the linear layers
    # (CPU only; bandwidth-bound decode reads 2-4x fewer bytes). None: auto (on for CPU
    # bfloat16, and for float32 picked by dtype="auto"; off for a float32 asked for by name),
    # 0: off.
    int8_small_batch_rows: int | None = None
    # Activation precision of the float32 CPU block kernels (layers/linear.py): 16 keeps
    # results within float rounding of the fp32 math; 8 is llama.cpp's numerics, faster on
    # batched steps, and moves logprobs by up to ~0.4 nats.
    activation_bits: int = 16
    cache: CacheConfig = field(default_factory=CacheConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
