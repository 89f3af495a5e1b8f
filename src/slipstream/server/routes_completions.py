"""POST /v1/completions: the legacy text API (string, strings, token ids; n; echo; logprobs)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from slipstream.engine.client import GenerationDelta, GenerationRequest
from slipstream.protocol.errors import APIError, bad_request
from slipstream.protocol.openai import (
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
)
from slipstream.protocol.sse import DONE, MEDIA_TYPE, sse_event
from slipstream.server.body import parse_body
from slipstream.server.logprobs import completion_logprobs
from slipstream.server.sampling import (
    check_token_ids,
    generation_requests,
    resolve_max_tokens,
    sampling_params,
)
from slipstream.server.state import ServerState, get_state
from slipstream.server.streams import collect_all, engine_error, merge, unless_disconnected
from slipstream.server.usage import usage_for

DEFAULT_MAX_TOKENS = 16  # OpenAI's default for the legacy completions API


async def tokenize_prompts(state: ServerState, body: CompletionRequest) -> list[list[int]]:
    """Every accepted prompt form, as a list of token-id prompts."""
    tokenizer = state.client.tokenizer
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

    return await asyncio.to_thread(encode) if sum(map(len, texts)) > 8192 else encode()


async def completions(request: Request) -> Response:
    state = get_state(request)
    body = await parse_body(request, CompletionRequest)
    state.check_model(body.model)
    prompts = await tokenize_prompts(state, body)
    info = state.client.model_info
    engine_requests: list[GenerationRequest] = []
    request_id = f"cmpl-{uuid.uuid4().hex}"
    for p, prompt_ids in enumerate(prompts):
        if not prompt_ids:
            raise bad_request("'prompt' must not be empty.", param="prompt")
        check_token_ids(info, prompt_ids, "prompt")
        max_tokens = resolve_max_tokens(
            info, len(prompt_ids), body.max_tokens, DEFAULT_MAX_TOKENS, "prompt"
        )
        sampling = sampling_params(body, max_tokens, body.logprobs)
        engine_requests += generation_requests(
            body, request_id, prompt_ids, sampling, first_index=p * body.n
        )
    state.admit(len(engine_requests))
    echo = [
        state.client.tokenizer.decode(r.prompt_token_ids) if body.echo else ""
        for r in engine_requests
    ]
    top_k = body.logprobs or 0
    if body.stream:
        return await _stream(request, state, body, request_id, engine_requests, echo, top_k)
    try:
        results = await unless_disconnected(request, collect_all(state.client, engine_requests))
    except Exception as exc:
        raise engine_error(exc) or exc from None
    choices = [
        CompletionChoice(
            index=i,
            text=echo[i] + r.text,
            logprobs=(
                completion_logprobs(r.logprobs, top_k, len(echo[i]))
                if body.logprobs is not None
                else None
            ),
            finish_reason=r.finish_reason,
        )
        for i, r in enumerate(results)
    ]
    per_prompt = [results[p * body.n : (p + 1) * body.n] for p in range(len(prompts))]
    response = CompletionResponse(
        id=request_id,
        model=state.served_model_name,
        choices=choices,
        usage=usage_for(per_prompt),
    )
    return JSONResponse(response.model_dump(mode="json"))


async def _stream(
    request: Request,
    state: ServerState,
    body: CompletionRequest,
    request_id: str,
    engine_requests: list[GenerationRequest],
    echo: list[str],
    top_k: int,
) -> Response:
    deltas = merge(state.client, engine_requests)
    try:
        first = await unless_disconnected(request, anext(deltas))
    except BaseException as exc:
        await deltas.aclose()
        raise engine_error(exc) or exc from None
    model = state.served_model_name
    offsets = [0] * len(engine_requests)

    def delta_chunk(index: int, delta: GenerationDelta) -> bytes:
        prefix = ""
        if offsets[index] == 0 and echo[index]:
            prefix = echo[index]
        logprobs = None
        if body.logprobs is not None:
            logprobs = completion_logprobs(
                delta.logprobs or [], top_k, offsets[index] + len(prefix)
            )
        text = prefix + delta.text
        offsets[index] += len(text)
        choice = CompletionChoice(
            index=index, text=text, logprobs=logprobs, finish_reason=delta.finish_reason
        )
        return sse_event(CompletionResponse(id=request_id, model=model, choices=[choice]))

    async def events() -> AsyncIterator[bytes]:
        last: dict[int, GenerationDelta] = {}
        try:
            last[first[0]] = first[1]
            yield delta_chunk(*first)
            async for index, delta in deltas:
                last[index] = delta
                yield delta_chunk(index, delta)
            if body.include_usage:
                per_prompt = [
                    [last[i] for i in range(p * body.n, (p + 1) * body.n) if i in last]
                    for p in range(len(engine_requests) // body.n)
                ]
                usage = usage_for(per_prompt)
                yield sse_event(
                    CompletionResponse(id=request_id, model=model, choices=[], usage=usage)
                )
        except Exception as exc:
            error = engine_error(exc) or APIError(
                500, f"internal error: {exc}", type="server_error"
            )
            yield sse_event(error.body())
        finally:
            with contextlib.suppress(Exception):
                await deltas.aclose()
        yield DONE

    return StreamingResponse(events(), media_type=MEDIA_TYPE)
