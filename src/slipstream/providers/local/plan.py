"""An OpenAI body → the engine requests that answer it (`LocalPlan`), for the local engine.

Validation (pydantic: a 400 naming the field), chat templating, tokenization, prompt forms of
the legacy API (string, strings, token ids, lists of them), context checks, `n` choices per
prompt and echo. Every user-caused failure is raised as `APIError` with OpenAI's wording.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from slipstream.engine.client import AsyncEngineClient, GenerationRequest
from slipstream.protocol.errors import APIError, bad_request, from_validation_error
from slipstream.protocol.openai import ChatCompletionRequest, CompletionRequest, SamplingRequest
from slipstream.providers.local.sampling import (
    check_token_ids,
    generation_requests,
    resolve_max_tokens,
    sampling_params,
)

THREAD_TOKENIZE_CHARS = 8192  # longer prompts are tokenized off the event loop
DEFAULT_COMPLETION_TOKENS = 16  # OpenAI's default for the legacy completions API


@dataclass
class LocalPlan:
    """What the engine runs for one request, and what shaping its answer needs."""

    chat: bool
    body: SamplingRequest
    response_id: str
    requests: list[GenerationRequest]
    echo: list[str]  # per engine request: the prompt text to prepend (completions' echo)
    top_k: int  # top logprobs per token
    want_logprobs: bool

    @property
    def num_prompts(self) -> int:
        return len(self.requests) // self.body.n


def _validate(model: type[SamplingRequest], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


async def _off_loop_if_long(size: int, work: Any) -> Any:
    return await asyncio.to_thread(work) if size > THREAD_TOKENIZE_CHARS else work()


async def tokenize_chat(client: AsyncEngineClient, body: ChatCompletionRequest) -> list[int]:
    tokenizer = client.tokenizer
    try:
        messages = [
            {**m.model_dump(exclude_none=True, exclude={"content"}), "content": m.text()}
            for m in body.messages
        ]
    except ValueError as exc:
        raise bad_request(str(exc), param="messages") from None

    def render() -> list[int]:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tools=body.tools)
        return tokenizer.encode(text, add_special_tokens=False)

    try:
        return await _off_loop_if_long(sum(len(m["content"]) for m in messages), render)
    except APIError:
        raise
    except Exception as exc:
        raise bad_request(f"Could not apply the chat template: {exc}", param="messages") from None


async def tokenize_prompts(client: AsyncEngineClient, body: CompletionRequest) -> list[list[int]]:
    """Every accepted prompt form, as a list of token-id prompts."""
    tokenizer = client.tokenizer
    prompt = body.prompt
    if isinstance(prompt, str):
        texts: list[str] = [prompt]
    elif all(isinstance(p, str) for p in prompt):
        texts = list(prompt)  # type: ignore[arg-type]
    elif all(isinstance(p, int) for p in prompt):
        return [list(prompt)]  # type: ignore[arg-type]
    else:
        return [list(p) for p in prompt]  # type: ignore[union-attr]
    if any(not t for t in texts):
        raise bad_request("'prompt' must not be empty.", param="prompt")

    def encode() -> list[list[int]]:
        return [tokenizer.encode(t, add_special_tokens=False) for t in texts]

    return await _off_loop_if_long(sum(map(len, texts)), encode)


async def plan_chat(client: AsyncEngineClient, raw: dict[str, Any]) -> LocalPlan:
    body: ChatCompletionRequest = _validate(ChatCompletionRequest, raw)
    prompt_ids = await tokenize_chat(client, body)
    max_tokens = resolve_max_tokens(
        client.model_info, len(prompt_ids), body.requested_max_tokens, None, "messages"
    )
    top_k = body.top_logprobs or 0
    sampling = sampling_params(body, max_tokens, top_k if body.logprobs else None)
    response_id = f"chatcmpl-{uuid.uuid4().hex}"
    requests = generation_requests(body, response_id, prompt_ids, sampling)
    return LocalPlan(True, body, response_id, requests, [""] * len(requests), top_k, body.logprobs)


async def plan_completion(client: AsyncEngineClient, raw: dict[str, Any]) -> LocalPlan:
    body: CompletionRequest = _validate(CompletionRequest, raw)
    prompts = await tokenize_prompts(client, body)
    info = client.model_info
    response_id = f"cmpl-{uuid.uuid4().hex}"
    requests: list[GenerationRequest] = []
    for p, prompt_ids in enumerate(prompts):
        if not prompt_ids:
            raise bad_request("'prompt' must not be empty.", param="prompt")
        check_token_ids(info, prompt_ids, "prompt")
        max_tokens = resolve_max_tokens(
            info, len(prompt_ids), body.max_tokens, DEFAULT_COMPLETION_TOKENS, "prompt"
        )
        sampling = sampling_params(body, max_tokens, body.logprobs)
        requests += generation_requests(
            body, response_id, prompt_ids, sampling, first_index=p * body.n
        )
    decode = client.tokenizer.decode
    echo = [decode(r.prompt_token_ids) if body.echo else "" for r in requests]
    top_k = body.logprobs or 0
    return LocalPlan(False, body, response_id, requests, echo, top_k, body.logprobs is not None)
