"""Anthropic Messages API: OpenAI chat bodies translated to `/v1/messages` and back.

Auth is `x-api-key` plus `anthropic-version`. Streams are Anthropic's typed SSE events,
translated one by one into OpenAI chunks by `MessagesStreamToChat`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Mapping

import orjson

from slipstream.protocol.anthropic import chat_request_to_messages, messages_response_to_chat
from slipstream.protocol.anthropic_stream import AnthropicStreamError, MessagesStreamToChat
from slipstream.providers.base import (
    ErrorKind,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    StreamChunk,
    Timeouts,
)
from slipstream.providers.http_transport import UpstreamHTTP, iter_bytes
from slipstream.providers.openai_compat import usage_from_openai
from slipstream.providers.sse_reader import iter_sse
from slipstream.providers.upstream_errors import Redactor, mid_stream, translate_chat

DEFAULT_API_BASE = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"

_STREAM_ERRORS = {
    "overloaded_error": (ErrorKind.SERVER, 529),
    "api_error": (ErrorKind.SERVER, 500),
    "rate_limit_error": (ErrorKind.RATE_LIMITED, 429),
    "invalid_request_error": (ErrorKind.BAD_REQUEST, 400),
    "authentication_error": (ErrorKind.AUTH, 401),
    "permission_error": (ErrorKind.AUTH, 403),
    "not_found_error": (ErrorKind.NOT_FOUND, 404),
}


class AnthropicProvider:
    name = "anthropic"

    def __init__(
        self,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        api_version: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeouts: Timeouts | None = None,
        secrets: Iterable[str] = (),
        http: UpstreamHTTP | None = None,
    ) -> None:
        base = (api_base or DEFAULT_API_BASE).rstrip("/")
        self.url = f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"
        self.timeouts = timeouts or Timeouts()
        self._headers = {
            "content-type": "application/json",
            "anthropic-version": api_version or DEFAULT_VERSION,
            **dict(headers or {}),
        }
        if api_key:
            self._headers["x-api-key"] = api_key
        self.http = http or UpstreamHTTP(self.name, Redactor.of([api_key, *secrets]))

    def _prepare(self, request: ProviderRequest) -> tuple[bytes, dict[str, str]]:
        body = translate_chat(self.name, request, chat_request_to_messages)
        body["stream"] = request.stream
        headers = {**request.headers, **self._headers} if request.headers else self._headers
        return orjson.dumps(body), headers

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        content, headers = self._prepare(request)
        response = await self.http.post(self.url, content, headers, request.timeouts)
        try:
            body = messages_response_to_chat(
                orjson.loads(response.content), request.body.get("model")
            )
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            raise ProviderError(
                ErrorKind.SERVER, 502, "anthropic upstream sent a malformed answer"
            ) from None
        return ProviderResponse(body=body, usage=usage_from_openai(body["usage"]))

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamChunk]:
        content, headers = self._prepare(request)
        include_usage = bool((request.body.get("stream_options") or {}).get("include_usage"))
        translator = MessagesStreamToChat(request.body.get("model"), include_usage)
        started = time.monotonic()
        sent = False
        async with self.http.stream(self.url, content, headers, request.timeouts) as response:
            try:
                events = iter_sse(iter_bytes(self.name, response, request.timeouts, started))
                async for event, data in events:
                    try:
                        chunks = translator.feed((event or b"").decode(), orjson.loads(data))
                    except AnthropicStreamError as exc:
                        raise self._stream_error(exc) from None
                    for chunk in chunks:
                        usage = usage_from_openai(chunk.get("usage"))
                        sent = True
                        yield StreamChunk(data=chunk, usage=usage)
                    if event == b"message_stop" and not include_usage:
                        yield StreamChunk(None, usage=usage_from_openai(translator.openai_usage()))
            except ProviderError as error:
                raise (mid_stream(error) if sent else error) from None
            except (orjson.JSONDecodeError, AttributeError, TypeError):
                error = ProviderError(ErrorKind.SERVER, 502, "anthropic sent a malformed event")
                raise (mid_stream(error) if sent else error) from None

    def _stream_error(self, exc: AnthropicStreamError) -> ProviderError:
        kind, status = _STREAM_ERRORS.get(exc.error_type, (ErrorKind.SERVER, 500))
        message = self.http.redactor.text(exc.message)
        return ProviderError(kind, status, f"anthropic stream error {exc.error_type}: {message}")

    async def aclose(self) -> None:
        await self.http.aclose()
