"""POST /v1/chat/completions: chat template → token ids → engine → OpenAI response or SSE."""

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
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatResponseMessage,
    DeltaMessage,
)
from slipstream.protocol.sse import DONE, MEDIA_TYPE, sse_event
from slipstream.server.body import parse_body
from slipstream.server.logprobs import chat_logprobs
from slipstream.server.sampling import generation_requests, resolve_max_tokens, sampling_params
from slipstream.server.state import ServerState, get_state
from slipstream.server.streams import collect_all, engine_error, merge, unless_disconnected
from slipstream.server.usage import usage_for

_THREAD_TOKENIZE_CHARS = 8192  # longer prompts are tokenized off the event loop


async def tokenize_chat(state: ServerState, body: ChatCompletionRequest) -> list[int]:
    tokenizer = state.client.tokenizer
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

    size = sum(len(m["content"]) for m in messages)
    try:
        return await asyncio.to_thread(render) if size > _THREAD_TOKENIZE_CHARS else render()
    except APIError:
        raise
    except Exception as exc:
        raise bad_request(f"Could not apply the chat template: {exc}", param="messages") from None


async def chat_completions(request: Request) -> Response:
    state = get_state(request)
    body = await parse_body(request, ChatCompletionRequest)
    state.check_model(body.model)
    prompt_ids = await tokenize_chat(state, body)
    info = state.client.model_info
    max_tokens = resolve_max_tokens(
        info, len(prompt_ids), body.requested_max_tokens, None, "messages"
    )
    top_k = body.top_logprobs or 0
    sampling = sampling_params(body, max_tokens, top_k if body.logprobs else None)
    request_id = f"chatcmpl-{uuid.uuid4().hex}"
    engine_requests = generation_requests(body, request_id, prompt_ids, sampling)
    state.admit(len(engine_requests))
    model = state.served_model_name
    if body.stream:
        return await _stream(request, state, body, request_id, engine_requests, top_k)
    try:
        results = await unless_disconnected(request, collect_all(state.client, engine_requests))
    except Exception as exc:
        raise engine_error(exc) or exc from None
    choices = [
        ChatChoice(
            index=i,
            message=ChatResponseMessage(content=r.text),
            logprobs=chat_logprobs(r.logprobs, top_k) if body.logprobs else None,
            finish_reason=r.finish_reason,
        )
        for i, r in enumerate(results)
    ]
    response = ChatCompletionResponse(
        id=request_id, model=model, choices=choices, usage=usage_for([results])
    )
    return JSONResponse(response.model_dump(mode="json"))


async def _stream(
    request: Request,
    state: ServerState,
    body: ChatCompletionRequest,
    request_id: str,
    engine_requests: list[GenerationRequest],
    top_k: int,
) -> Response:
    deltas = merge(state.client, engine_requests)
    try:
        # Wait for the first delta before answering, so a rejected request is still a 400.
        first = await unless_disconnected(request, anext(deltas))
    except BaseException as exc:
        await deltas.aclose()
        if isinstance(exc, StopAsyncIteration):
            first = None
        else:
            raise engine_error(exc) or exc from None
    model = state.served_model_name

    def chunk(choices: list[ChatChunkChoice], usage=None) -> bytes:
        return sse_event(
            ChatCompletionChunk(id=request_id, model=model, choices=choices, usage=usage)
        )

    def delta_chunk(index: int, delta: GenerationDelta) -> bytes:
        logprobs = chat_logprobs(delta.logprobs or [], top_k) if body.logprobs else None
        return chunk(
            [
                ChatChunkChoice(
                    index=index,
                    delta=DeltaMessage(content=delta.text),
                    logprobs=logprobs,
                    finish_reason=delta.finish_reason,
                )
            ]
        )

    async def events() -> AsyncIterator[bytes]:
        last: dict[int, GenerationDelta] = {}
        try:
            for i in range(len(engine_requests)):
                yield chunk(
                    [ChatChunkChoice(index=i, delta=DeltaMessage(role="assistant", content=""))]
                )
            if first is not None:
                last[first[0]] = first[1]
                yield delta_chunk(*first)
                async for index, delta in deltas:
                    last[index] = delta
                    yield delta_chunk(index, delta)
            if body.include_usage:
                yield chunk([], usage=usage_for([list(last.values())]))
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
