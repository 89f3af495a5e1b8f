"""Plain data passed between the engine's parts: requests, sampling parameters, step plans.

The scheduler hands the runner a `StepPlan`; the runner answers with one `SampledToken` per
sequence that reached the end of its known tokens. Nothing here imports torch.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SamplingParams:
    """Per-request sampling controls, OpenAI/vLLM semantics.

    temperature == 0 means greedy. top_k <= 0 disables top-k. `logprobs` is None for no
    logprobs, otherwise the number of top alternatives to return (0 = chosen token only).
    Stop *strings* are handled by the client-side detokenizer, not here.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    max_tokens: int = 16
    min_tokens: int = 0
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logprobs: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 1e-5

    @property
    def needs_penalties(self) -> bool:
        return (
            self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
            or self.repetition_penalty != 1.0
        )


class RequestStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    PREEMPTED = "preempted"
    FINISHED_STOPPED = "stop"
    FINISHED_LENGTH = "length"
    FINISHED_ABORTED = "abort"

    @property
    def finished(self) -> bool:
        return self in (
            RequestStatus.FINISHED_STOPPED,
            RequestStatus.FINISHED_LENGTH,
            RequestStatus.FINISHED_ABORTED,
        )


@dataclass(eq=False)
class Request:
    """One sequence inside the engine, with its mutable scheduling state."""

    request_id: str
    prompt_token_ids: list[int]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    eos_token_ids: frozenset[int] = frozenset()
    cache_salt: str | None = None
    arrival_time: float = field(default_factory=time.monotonic)
    max_model_len: int = 1 << 30

    output_token_ids: list[int] = field(default_factory=list)
    status: RequestStatus = RequestStatus.WAITING
    num_computed_tokens: int = 0
    block_ids: list[int] = field(default_factory=list)
    # Prompt tokens served from the prefix cache at first admission (reported as cached_tokens).
    num_cached_tokens: int = -1
    num_preemptions: int = 0
    # monotonic time of the first step that computed any of its tokens (queue time ends here);
    # stamped by LLMEngine.step.
    first_scheduled_time: float | None = None
    # Set by the KV manager: chained block hashes of the full blocks of all_token_ids.
    block_hashes: list[int] = field(default_factory=list)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.output_token_ids)

    @property
    def all_token_ids(self) -> list[int]:
        return self.prompt_token_ids + self.output_token_ids

    def token_at(self, pos: int) -> int:
        n = len(self.prompt_token_ids)
        return self.prompt_token_ids[pos] if pos < n else self.output_token_ids[pos - n]

    def token_slice(self, start: int, end: int) -> list[int]:
        n = len(self.prompt_token_ids)
        if end <= n:
            return self.prompt_token_ids[start:end]
        if start >= n:
            return self.output_token_ids[start - n : end - n]
        return self.prompt_token_ids[start:] + self.output_token_ids[: end - n]


@dataclass
class ScheduledSeq:
    """One request's share of a step: compute `num_tokens` tokens starting at `start_pos`.

    `sample` is True when the chunk reaches the end of the request's known tokens, so the
    runner samples the next token from the last position's logits.
    """

    request: Request
    start_pos: int
    num_tokens: int
    sample: bool

    @property
    def token_ids(self) -> list[int]:
        return self.request.token_slice(self.start_pos, self.start_pos + self.num_tokens)


@dataclass
class StepPlan:
    """The single contract between scheduler and runner."""

    seqs: list[ScheduledSeq] = field(default_factory=list)
    preempted_ids: list[str] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(s.num_tokens for s in self.seqs)

    @property
    def empty(self) -> bool:
        return not self.seqs


@dataclass(frozen=True)
class TokenLogprob:
    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class SampledToken:
    token_id: int
    logprob: TokenLogprob | None = None


@dataclass(frozen=True)
class RequestOutput:
    """What the engine reports for one request after a step (a delta)."""

    request_id: str
    new_token_ids: list[int]
    new_logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None  # "stop" | "length" | "abort"
    num_prompt_tokens: int = 0
    num_cached_tokens: int = 0
    # Seconds between arrival and first scheduling; filled by LLMEngine on the first delta.
    queue_time_s: float | None = None


@dataclass(frozen=True)
class EngineStats:
    num_running: int = 0
    num_waiting: int = 0
    kv_cache_usage: float = 0.0
    num_blocks: int = 0
    prefix_cache_queries: int = 0  # tokens looked up (cumulative)
    prefix_cache_hits: int = 0  # tokens found (cumulative)
    num_preemptions: int = 0  # cumulative
    step_tokens: int = 0


@dataclass(frozen=True)
class ModelInfo:
    """What the front end needs to know about the loaded model (sent once by the engine)."""

    name: str
    max_model_len: int
    vocab_size: int
    eos_token_ids: frozenset[int]
    dtype: str
    device: str
    num_kv_blocks: int
    block_size: int
