"""OpenAI-compatible upstreams: vLLM, SGLang, llama.cpp server, Ollama, TGI, Together,
Fireworks, Groq and OpenAI itself.

The fast path is pass-through. When the gateway hands over the client's body bytes
(`raw_body`, given only when nothing needed changing), they go upstream untouched, except
that a stream gets `stream_options.include_usage` prepended (one copy, no parse) so usage can
be metered; the extra usage chunk is withheld from a client that did not ask for it. When the
model name changes the parsed body is re-serialised: measured on this machine, orjson.dumps of
the parsed dict (~3 us for 5 KiB, ~120 us for 500 KiB) beats locating and patching the
`"model"` value in the bytes (~9 us / ~600 us), which needs a full scan to be safe. Answers
and stream payloads come back as the upstream's exact bytes; only payloads that carry usage
or an error are parsed, found by a substring test before any JSON work.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import orjson

from slipstream.providers.base import (
    Endpoint,
    ErrorKind,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    StreamChunk,
    Timeouts,
    Usage,
)
from slipstream.providers.http_transport import UpstreamHTTP, iter_bytes
from slipstream.providers.sse_reader import iter_sse
from slipstream.providers.upstream_errors import Redactor, classify_status, mid_stream

_STREAM_USAGE = b'"stream_options":{"include_usage":true},'
_USAGE_NULLS = (b'"usage":null', b'"usage": null')


def usage_from_openai(usage: Any) -> Usage | None:
    """`Usage` from an OpenAI `usage` object (cached tokens from prompt_tokens_details)."""
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details") or {}
    return Usage(
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
    )


def with_stream_usage(raw: bytes) -> bytes | None:
    """The client's bytes asking for usage on the stream: `stream_options` is prepended as
    the first key (one copy, no parse). The caller checked the body has no stream_options."""
    brace = raw.find(b"{", 0, 64)
    if brace < 0:
        return None
    return b"".join((raw[: brace + 1], _STREAM_USAGE, raw[brace + 1 :]))


class OpenAICompatProvider:
    """An OpenAI-compatible deployment at `api_base` (e.g. `http://host:8000/v1`)."""

    name = "openai"

    def __init__(
        self,
        *,
        api_base: str,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeouts: Timeouts | None = None,
        stream_usage: bool = True,
        secrets: Iterable[str] = (),
        http: UpstreamHTTP | None = None,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.timeouts = timeouts or Timeouts()
        self.stream_usage = stream_usage  # ask for usage on streams (some old servers reject it)
        self._headers = {"content-type": "application/json", **dict(headers or {})}
        self._headers.update(self._auth_headers(api_key))
        self.http = http or UpstreamHTTP(self.name, Redactor.of([api_key, *secrets]))

    def _auth_headers(self, api_key: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"} if api_key else {}

    def url(self, endpoint: Endpoint, body: Mapping[str, Any]) -> str:
        return f"{self.api_base}/{endpoint.value}"

    def _request_headers(self, request: ProviderRequest) -> dict[str, str]:
        if not request.headers:
            return self._headers
        return {**request.headers, **self._headers}

    def prepare_body(self, request: ProviderRequest) -> tuple[bytes, bool]:
        """(bytes to send, whether the upstream's usage-only chunk must be withheld)."""
        body = request.body
        add_usage = (
            request.stream
            and self.stream_usage
            and request.endpoint is not Endpoint.EMBEDDINGS
            and not (body.get("stream_options") or {}).get("include_usage")
        )
        raw = request.raw_body
        if raw is not None:  # the contract: given only when the body needed no change
            if not add_usage:
                return raw, False
            if "stream_options" not in body:
                patched = with_stream_usage(raw)
                if patched is not None:
                    return patched, True
        if add_usage:
            options = {**(body.get("stream_options") or {}), "include_usage": True}
            body = {**body, "stream_options": options}
        return orjson.dumps(body), add_usage

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        content, _ = self.prepare_body(request)
        timeouts = request.timeouts or self.timeouts
        response = await self.http.post(
            self.url(request.endpoint, request.body),
            content,
            self._request_headers(request),
            timeouts,
        )
        raw = response.content
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ProviderError(
                ErrorKind.SERVER, 502, f"{self.name} upstream sent a body that is not JSON"
            ) from None
        return ProviderResponse(
            body=body,
            status=response.status,
            usage=usage_from_openai(body.get("usage")),
            raw=raw,
        )

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamChunk]:
        content, withhold_usage = self.prepare_body(request)
        timeouts = request.timeouts or self.timeouts
        started = time.monotonic()
        sent = False
        url = self.url(request.endpoint, request.body)
        async with self.http.stream(url, content, self._request_headers(request), timeouts) as r:
            try:
                async for _event, data in iter_sse(iter_bytes(self.name, r, timeouts, started)):
                    if data.startswith(b"[DONE]"):
                        return
                    chunk = self._chunk(data, withhold_usage)
                    yield chunk
                    sent = sent or chunk.raw is not None
            except ProviderError as error:
                raise (mid_stream(error) if sent else error) from None

    def _chunk(self, data: bytes, withhold_usage: bool) -> StreamChunk:
        """Pass the payload through; parse it only if it may carry usage or an error."""
        has_usage = b'"usage"' in data and not any(n in data for n in _USAGE_NULLS)
        if not has_usage and b'"error"' not in data:
            return StreamChunk(data=None, raw=data)
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            return StreamChunk(data=None, raw=data)
        if not isinstance(parsed, dict):
            return StreamChunk(data=None, raw=data)
        if parsed.get("error") or parsed.get("object") == "error":
            raise self._stream_error(parsed)
        usage = usage_from_openai(parsed.get("usage")) if has_usage else None
        if usage is not None and withhold_usage and not parsed.get("choices"):
            # The usage-only chunk the client did not ask for: account, don't forward.
            return StreamChunk(data=None, raw=None, usage=usage)
        return StreamChunk(data=None, raw=data, usage=usage)

    def _stream_error(self, parsed: dict[str, Any]) -> ProviderError:
        error = parsed.get("error") if isinstance(parsed.get("error"), dict) else parsed
        message = self.http.redactor.text(str(error.get("message") or "upstream stream error"))
        code = error.get("code")
        status = code if isinstance(code, int) and 400 <= code < 600 else 500
        kind, shown = classify_status(status, f"{message} {error.get('code') or ''}")
        return ProviderError(kind, shown, f"{self.name} upstream stream error: {message}")

    async def aclose(self) -> None:
        await self.http.aclose()
