"""`slipstream serve` and `slipstream engine`: one model behind the OpenAI API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slipstream.engine.config import CacheConfig, EngineConfig, SchedulerConfig

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="A known short name (see `slipstream models`), a .gguf file, or a Hugging Face "
        "model directory (config.json + *.safetensors).",
    ),
]
HostOpt = Annotated[
    str, typer.Option(help="Interface to listen on; 0.0.0.0 exposes the server to the network.")
]
PortOpt = Annotated[int, typer.Option(help="TCP port of the HTTP API.")]
MaxSeqsOpt = Annotated[
    int,
    typer.Option(help="Most sequences decoded together in one step (the running batch)."),
]
MaxBatchedOpt = Annotated[
    int,
    typer.Option(
        help="Token budget of one step, prefill chunks and decodes together. Larger: faster "
        "prefill; smaller: steadier inter-token latency under load."
    ),
]
KVOpt = Annotated[
    float, typer.Option("--kv-cache-gib", help="Memory for the paged KV cache, in GiB.")
]
KVDtypeOpt = Annotated[
    str,
    typer.Option(
        help="KV cache element type: auto, float32, bfloat16 or float16. auto: the compute "
        "dtype, but float16 on the CPU block-kernel path (as llama.cpp), which halves the "
        "cache reads that bound decode attention."
    ),
]
BlockOpt = Annotated[int, typer.Option(help="Tokens per KV-cache block.")]
NoPrefixOpt = Annotated[
    bool,
    typer.Option(
        "--no-prefix-caching",
        help="Do not reuse KV blocks of earlier prompts with the same prefix.",
    ),
]
DtypeOpt = Annotated[
    str,
    typer.Option(
        help="Compute dtype: auto, float32, bfloat16 or float16. On CPU, auto keeps a quantized "
        "GGUF's 4-bit/int8 weight blocks (fast C++ kernels, float32 activations) and runs "
        "float checkpoints in bf16 where the CPU has bf16 dot products; float32 by name is "
        "exact dense fp32. CUDA: bf16."
    ),
]
MaxLenOpt = Annotated[
    int | None,
    typer.Option(
        help="Context length (prompt + completion); default: the model's own, capped at 8192."
    ),
]
WorkersOpt = Annotated[
    int,
    typer.Option(
        min=1,
        help="Gateway worker processes sharing the port (needs --config without local "
        "deployments; use redis_url so limits are shared across workers).",
    ),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        help="CPU threads for the engine's forward pass; default: measured per step between "
        "all cores and all but one (an OpenMP team that shares its cores with a busy process "
        "stalls at every barrier, so the faster of the two depends on the machine's load)."
    ),
]
ActBitsOpt = Annotated[
    int,
    typer.Option(
        help="CPU float32 path: activation precision of the quantized matmuls. 16 (default) "
        "stays within float rounding of the fp32 math; 8 is llama.cpp's numerics, ~1.2-1.5x "
        "faster on batched steps, logprobs off by up to ~0.4 nats.",
    ),
]
QueueOpt = Annotated[
    int,
    typer.Option(
        help="Requests allowed to wait beyond the running batch; past max-num-seqs + max-queue "
        "the server answers 503 with Retry-After instead of queueing without bound."
    ),
]
NameOpt = Annotated[
    str | None,
    typer.Option(help="Model id clients send and /v1/models lists; default: the --model value."),
]
LogOpt = Annotated[str, typer.Option(help="Log level: debug, info, warning, error.")]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="A slipstream.yaml of models and their deployments (OpenAI-compatible, Anthropic, "
        "Azure, Bedrock, Gemini, local). Without it, --model is served alone. The engine starts "
        "only if a deployment is `provider: local`. Reloaded on SIGHUP or POST /admin/reload.",
    ),
]


def _config_error_line(exc: Exception) -> str:
    """A ConfigError's problems on one line: `invalid config F: models[0].x: msg; ...`."""
    problems = getattr(exc, "problems", None)
    source = getattr(exc, "source", "config")
    if problems:
        return f"invalid config {source}: " + "; ".join(problems)
    return " ".join(str(exc).split())


def _run(
    model: str,
    host: str,
    port: int,
    max_num_seqs: int,
    max_num_batched_tokens: int,
    kv_cache_gib: float,
    kv_cache_dtype: str,
    block_size: int,
    no_prefix_caching: bool,
    dtype: str,
    max_model_len: int | None,
    max_queue: int,
    served_model_name: str | None,
    log_level: str,
    config: Path | None = None,
    threads: int | None = None,
    workers: int = 1,
    activation_bits: int = 16,
) -> None:
    from slipstream.config.loader import ConfigError, load_config
    from slipstream.engine.generation import EngineStartupError
    from slipstream.server.gateway_setup import local_model
    from slipstream.server.serve import ServeOptions, run

    def fail(message: str, code: int) -> typer.Exit:
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        return typer.Exit(code)

    if activation_bits not in (8, 16):
        raise fail(f"--activation-bits must be 8 or 16, got {activation_bits}", 2)
    kv_choices = ("auto", "float32", "bfloat16", "float16")
    if kv_cache_dtype not in kv_choices:
        raise fail(
            f"--kv-cache-dtype must be one of {', '.join(kv_choices)}, got {kv_cache_dtype}", 2
        )
    needs_engine = True
    if config is not None:
        try:
            # Checked here for a fast, one-line failure; serve() loads it again to run.
            local = local_model(load_config(config))
            needs_engine = local is not None
            model = local or model
        except ConfigError as exc:
            raise fail(_config_error_line(exc), 2) from None
        except ValueError as exc:
            raise fail(f"invalid config {config}: {exc}", 2) from None
    try:
        if needs_engine:
            from slipstream.engine.loader import resolve_model  # imports torch: only if needed

            resolve_model(model)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    engine_config = EngineConfig(
        model=model,
        dtype=dtype,
        max_model_len=max_model_len,
        num_threads=threads,
        activation_bits=activation_bits,
        cache=CacheConfig(
            block_size=block_size,
            kv_cache_memory_gib=kv_cache_gib,
            kv_cache_dtype=kv_cache_dtype,
            enable_prefix_caching=not no_prefix_caching,
        ),
        scheduler=SchedulerConfig(
            max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs
        ),
    )
    options = ServeOptions(
        host=host,
        port=port,
        served_model_name=served_model_name,
        max_queue=max_queue,
        log_level=log_level,
        config_path=str(config) if config is not None else None,
        workers=workers,
    )
    try:
        run(engine_config, options)
    except EngineStartupError as exc:
        raise fail(f"the engine could not start: {exc}", 1) from None
    except ValueError as exc:  # e.g. --workers with a local deployment
        raise fail(str(exc), 2) from None
    except KeyboardInterrupt:
        pass


def serve(
    model: ModelOpt = "smollm2-135m",
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    max_num_seqs: MaxSeqsOpt = 64,
    max_num_batched_tokens: MaxBatchedOpt = 512,
    kv_cache_gib: KVOpt = 1.0,
    kv_cache_dtype: KVDtypeOpt = "auto",
    block_size: BlockOpt = 16,
    no_prefix_caching: NoPrefixOpt = False,
    dtype: DtypeOpt = "auto",
    max_model_len: MaxLenOpt = None,
    max_queue: QueueOpt = 256,
    served_model_name: NameOpt = None,
    log_level: LogOpt = "info",
    config: ConfigOpt = None,
    threads: ThreadsOpt = None,
    workers: WorkersOpt = 1,
    activation_bits: ActBitsOpt = 16,
) -> None:
    """Serve models through the gateway: OpenAI (chat, completions, embeddings, models) and
    Anthropic (/v1/messages) front doors, plus health and metrics.

    Example: slipstream serve --model smollm2-135m --port 8000, then point any OpenAI client
    at http://127.0.0.1:8000/v1 (or an Anthropic client at http://127.0.0.1:8000). With
    --config slipstream.yaml, requests route to the configured deployments with fallbacks.
    """
    _run(**locals())


def engine(
    model: ModelOpt = "smollm2-135m",
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    max_num_seqs: MaxSeqsOpt = 64,
    max_num_batched_tokens: MaxBatchedOpt = 512,
    kv_cache_gib: KVOpt = 1.0,
    kv_cache_dtype: KVDtypeOpt = "auto",
    block_size: BlockOpt = 16,
    no_prefix_caching: NoPrefixOpt = False,
    dtype: DtypeOpt = "auto",
    max_model_len: MaxLenOpt = None,
    max_queue: QueueOpt = 256,
    served_model_name: NameOpt = None,
    log_level: LogOpt = "info",
    threads: ThreadsOpt = None,
    activation_bits: ActBitsOpt = 16,
) -> None:
    """Run one engine alone behind the OpenAI API, for a fleet behind one or more gateways."""
    _run(**locals())
