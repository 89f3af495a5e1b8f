"""What a front end sends the engine client and gets back: generation requests, text deltas
with logprobs, and the errors a request can end with. Plain data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

from slipstream.engine.types import SamplingParams


class EngineStartupError(RuntimeError):
    """The engine process could not start (e.g. the model failed to load)."""


class EngineDeadError(RuntimeError):
    """The engine process is gone; in-flight and new requests fail with this."""


class RequestRejectedError(ValueError):
    """The engine refused a request (bad input); other requests are unaffected."""


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    prompt_token_ids: list[int]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: tuple[str, ...] = ()
    include_stop_str_in_output: bool = False
    cache_salt: str | None = None


@dataclass(frozen=True)
class LogprobEntry:
    """One generated token's logprob, with token text, and its top alternatives."""

    token: str
    token_id: int
    logprob: float
    top: tuple[tuple[str, int, float], ...] = ()  # (token text, token id, logprob)


@dataclass(frozen=True)
class GenerationDelta:
    text: str
    token_ids: list[int]
    logprobs: list[LogprobEntry] | None
    finish_reason: str | None
    num_prompt_tokens: int
    num_cached_tokens: int
    num_completion_tokens: int  # cumulative
