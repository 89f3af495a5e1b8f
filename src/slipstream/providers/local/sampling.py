"""The local engine's sampling side of an OpenAI request: context-length checks (with
OpenAI's exact messages, raised as `APIError`) and `SamplingParams` per choice."""

from __future__ import annotations

from dataclasses import replace

from slipstream.engine.generation import GenerationRequest
from slipstream.engine.types import ModelInfo, SamplingParams
from slipstream.protocol.errors import bad_request
from slipstream.protocol.openai import SamplingRequest


def resolve_max_tokens(
    info: ModelInfo, num_prompt_tokens: int, requested: int | None, default: int | None, param: str
) -> int:
    """The completion budget, or a 400 that says how the request overflows the context.

    `default` None means "whatever the context leaves" (chat); an explicit value is capped to
    what the context leaves (completions' OpenAI default of 16).
    """
    limit = info.max_model_len
    what = "messages" if param == "messages" else "prompt"
    if num_prompt_tokens >= limit:
        raise bad_request(
            f"This model's maximum context length is {limit} tokens, however your prompt has "
            f"{num_prompt_tokens} tokens, which leaves no room for a completion. "
            f"Please shorten the {what}.",
            param=param,
            code="context_length_exceeded",
        )
    room = limit - num_prompt_tokens
    if requested is None:
        return room if default is None else min(default, room)
    if num_prompt_tokens + requested > limit:
        raise bad_request(
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{num_prompt_tokens + requested} tokens ({num_prompt_tokens} in the {what}, "
            f"{requested} in the completion). Please reduce the length of the {what} or "
            f"set max_tokens to at most {room}.",
            param="max_tokens",
            code="context_length_exceeded",
        )
    return requested


def check_token_ids(info: ModelInfo, token_ids: list[int], param: str) -> None:
    bad = [t for t in token_ids if not 0 <= t < info.vocab_size]
    if bad:
        raise bad_request(
            f"Token id {bad[0]} in '{param}' is outside the vocabulary (0..{info.vocab_size - 1}).",
            param=param,
            code="invalid_value",
        )


def sampling_params(body: SamplingRequest, max_tokens: int, logprobs: int | None) -> SamplingParams:
    return SamplingParams(
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        top_k=0 if body.top_k is None or body.top_k < 0 else body.top_k,
        min_p=body.min_p,
        seed=body.seed,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        repetition_penalty=body.repetition_penalty,
        max_tokens=max_tokens,
        min_tokens=min(body.min_tokens, max_tokens),
        stop_token_ids=tuple(body.stop_token_ids or ()),
        ignore_eos=body.ignore_eos,
        logprobs=logprobs,
    )


def generation_requests(
    body: SamplingRequest,
    base_id: str,
    prompt_token_ids: list[int],
    sampling: SamplingParams,
    first_index: int = 0,
) -> list[GenerationRequest]:
    """`n` engine requests for one prompt; with a seed, choice i samples with seed + i."""
    requests = []
    for i in range(body.n):
        params = sampling if sampling.seed is None else replace(sampling, seed=sampling.seed + i)
        requests.append(
            GenerationRequest(
                request_id=f"{base_id}-{first_index + i}",
                prompt_token_ids=prompt_token_ids,
                sampling=params,
                stop=body.stop_list,
                include_stop_str_in_output=body.include_stop_str_in_output,
                cache_salt=body.cache_salt,
            )
        )
    return requests
