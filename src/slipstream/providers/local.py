"""The embedded engine as a provider, so `provider: local` goes through the same pipeline
(routing, fallbacks, metrics) as every remote upstream.

It talks to the engine process only through `AsyncEngineClient` (its socket protocol): an
OpenAI body becomes token ids (chat template + tokenizer) and `SamplingParams`, and the
engine's text deltas become OpenAI responses or chunks. One choice per request (`n` = 1).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError

from slipstream.engine.client import (
    EngineDeadError,
    GenerationDelta,
    GenerationRequest,
    RequestRejectedError,
)
from slipstream.engine.types import SamplingParams
from slipstream.protocol.openai import ChatCompletionRequest, CompletionRequest, SamplingRequest
from slipstream.providers.base import (
    Endpoint,
    ErrorKind,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    StreamChunk,
    Usage,
)
from slipstream.providers.upstream_errors import mid_stream, unsupported


def _bad(message: str) -> ProviderError:
    return ProviderError(ErrorKind.BAD_REQUEST, 400, message)


def _engine_error(exc: BaseException) -> ProviderError:
    if isinstance(exc, RequestRejectedError):
        return _bad(f"the engine rejected the request: {exc}")
    return ProviderError(ErrorKind.SERVER, 503, f"the local engine is unavailable: {exc}")


def _sampling(body: SamplingRequest, max_tokens: int) -> SamplingParams:
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
    )


class LocalEngineProvider:
    name = "local"

    def __init__(self, client: Any, *, model: str | None = None) -> None:
        self.client = client  # an AsyncEngineClient, started by whoever owns the process
        self.model = model

    # --- request building --------------------------------------------------------------

    def _prompt_ids(self, request: ProviderRequest) -> tuple[SamplingRequest, list[int]]:
        tokenizer = self.client.tokenizer
        try:
            if request.endpoint is Endpoint.CHAT:
                chat = ChatCompletionRequest.model_validate(request.body)
                messages = [
                    {**m.model_dump(exclude_none=True, exclude={"content"}), "content": m.text()}
                    for m in chat.messages
                ]
                text = tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, tools=chat.tools
                )
                return chat, tokenizer.encode(text, add_special_tokens=False)
            if request.endpoint is Endpoint.COMPLETIONS:
                completion = CompletionRequest.model_validate(request.body)
                prompt = completion.prompt
                if isinstance(prompt, str):
                    return completion, tokenizer.encode(prompt, add_special_tokens=False)
                if all(isinstance(t, int) for t in prompt):
                    return completion, list(prompt)  # type: ignore[arg-type]
                raise ValueError("the local provider takes one prompt per request")
        except ValidationError as exc:
            raise _bad(f"invalid request: {exc.errors()[0].get('msg', 'bad field')}") from None
        except ValueError as exc:
            raise _bad(str(exc)) from None
        raise unsupported(self.name, request.endpoint)

    def _generation(self, request: ProviderRequest) -> tuple[SamplingRequest, GenerationRequest]:
        body, prompt_ids = self._prompt_ids(request)
        if body.n != 1:
            raise _bad("the local provider serves one choice per request (n=1)")
        limit = self.client.model_info.max_model_len
        requested = getattr(body, "requested_max_tokens", None) or body.max_tokens
        if request.endpoint is Endpoint.COMPLETIONS and requested is None:
            requested = 16  # the OpenAI default for completions
        if len(prompt_ids) + (requested or 1) > limit:
            raise ProviderError(
                ErrorKind.CONTEXT_WINDOW,
                400,
                f"This model's maximum context length is {limit} tokens; the prompt has "
                f"{len(prompt_ids)} tokens and {requested or 1} more were requested "
                "(context_length_exceeded)",
            )
        max_tokens = requested or limit - len(prompt_ids)
        generation = GenerationRequest(
            request_id=f"{request.request_id}-{uuid.uuid4().hex[:8]}",
            prompt_token_ids=prompt_ids,
            sampling=_sampling(body, max_tokens),
            stop=body.stop_list,
            include_stop_str_in_output=body.include_stop_str_in_output,
            cache_salt=body.cache_salt,
        )
        return body, generation

    # --- answers -----------------------------------------------------------------------

    def _model(self, request: ProviderRequest) -> str:
        return str(request.body.get("model") or self.model or "local")

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        _, generation = self._generation(request)
        texts: list[str] = []
        last: GenerationDelta | None = None
        try:
            async with contextlib.aclosing(self.client.generate(generation)) as deltas:
                async for delta in deltas:
                    texts.append(delta.text)
                    last = delta
        except (RequestRejectedError, EngineDeadError) as exc:
            raise _engine_error(exc) from None
        usage = _usage(last)
        text = "".join(texts)
        finish = (last.finish_reason if last else None) or "stop"
        if request.endpoint is Endpoint.CHAT:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
                "logprobs": None,
            }
            kind, prefix = "chat.completion", "chatcmpl"
        else:
            choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
            kind, prefix = "text_completion", "cmpl"
        body = {
            "id": f"{prefix}-{uuid.uuid4().hex}",
            "object": kind,
            "created": int(time.time()),
            "model": self._model(request),
            "choices": [choice],
            "usage": _usage_json(usage),
        }
        return ProviderResponse(body=body, usage=usage)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamChunk]:
        body, generation = self._generation(request)
        chat = request.endpoint is Endpoint.CHAT
        base = {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": self._model(request),
        }

        def chunk(text: str | None, finish: str | None, role: bool = False) -> dict[str, Any]:
            if chat:
                delta: dict[str, Any] = {"role": "assistant"} if role else {}
                if text is not None:
                    delta["content"] = text
                choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            else:
                choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
            return {**base, "choices": [choice]}

        last: GenerationDelta | None = None
        sent = False
        try:
            async with contextlib.aclosing(self.client.generate(generation)) as deltas:
                async for delta in deltas:
                    if not sent and chat:
                        yield StreamChunk(data=chunk("", None, role=True))
                    sent = True
                    last = delta
                    yield StreamChunk(data=chunk(delta.text, delta.finish_reason))
        except (RequestRejectedError, EngineDeadError) as exc:
            error = _engine_error(exc)
            raise (mid_stream(error) if sent else error) from None
        usage = _usage(last)
        if body.include_usage:
            yield StreamChunk(
                data={**base, "choices": [], "usage": _usage_json(usage)}, usage=usage
            )
        else:
            yield StreamChunk(data=None, usage=usage)

    async def aclose(self) -> None:
        """The engine process belongs to the server, which shuts it down."""


def _usage(last: GenerationDelta | None) -> Usage:
    if last is None:
        return Usage()
    return Usage(
        prompt_tokens=last.num_prompt_tokens,
        completion_tokens=last.num_completion_tokens,
        cached_tokens=last.num_cached_tokens,
    )


def _usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }
