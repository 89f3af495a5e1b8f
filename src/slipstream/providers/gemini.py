"""Google Gemini (AI Studio) and Vertex AI: `generateContent` and
`streamGenerateContent?alt=sse`.

Gemini authenticates with an `x-goog-api-key` header (never the `?key=` query parameter, which
would put the key in URLs and so in logs); Vertex with an OAuth bearer token. Both speak the
same body format (`gemini_format.py`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any
from urllib.parse import quote

import orjson

from slipstream.providers.base import (
    ErrorKind,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    StreamChunk,
    Timeouts,
)
from slipstream.providers.gemini_format import GeminiStreamToChat, chat_to_gemini, gemini_to_chat
from slipstream.providers.http_transport import UpstreamHTTP, iter_bytes
from slipstream.providers.openai_compat import usage_from_openai
from slipstream.providers.sse_reader import iter_sse
from slipstream.providers.upstream_errors import (
    Redactor,
    decode_body,
    error_from_response,
    mid_stream,
    parse_duration,
    translate_chat,
)

GEMINI_API_BASE = "https://generativelanguage.googleapis.com/v1beta"


def retry_delay(body: Any) -> float | None:
    """Seconds from a google.rpc.RetryInfo detail (`"retryDelay": "30s"`)."""
    error = body.get("error") if isinstance(body, dict) else None
    for detail in (error or {}).get("details") or []:
        if isinstance(detail, dict) and detail.get("retryDelay"):
            return parse_duration(str(detail["retryDelay"]))
    return None


def _bad_api_key(body: Any) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return False
    reasons = [d.get("reason") for d in error.get("details") or [] if isinstance(d, dict)]
    return "API_KEY_INVALID" in reasons or "API key not valid" in str(error.get("message", ""))


class GeminiProvider:
    """The Gemini API (`x-goog-api-key`), or with `vertex=True` Vertex AI (bearer token), where
    `api_base` names the project and location: `https://{loc}-aiplatform.googleapis.com/v1/
    projects/{project}/locations/{loc}`."""

    name = "gemini"

    def __init__(
        self,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        vertex: bool = False,
        headers: Mapping[str, str] | None = None,
        timeouts: Timeouts | None = None,
        secrets: Iterable[str] = (),
        http: UpstreamHTTP | None = None,
    ) -> None:
        self.model = model
        self.timeouts = timeouts or Timeouts()
        self._headers = {"content-type": "application/json", **dict(headers or {})}
        base = (api_base or GEMINI_API_BASE).rstrip("/")
        if vertex:
            self.name = "vertex"
            if base.endswith("/models"):
                self._models = base
            elif "/publishers/" in base:
                self._models = f"{base}/models"
            else:
                self._models = f"{base}/publishers/google/models"
            if api_key:
                self._headers["authorization"] = f"Bearer {api_key}"
        else:
            self._models = base if base.endswith("/models") else f"{base}/models"
            if api_key:
                self._headers["x-goog-api-key"] = api_key
        redactor = Redactor.of([api_key, *secrets])
        self.http = http or UpstreamHTTP(
            self.name, redactor, error_mapper=lambda s, c, h: self._error(s, c, h, redactor)
        )

    def _error(
        self, status: int, content: bytes, headers: Mapping[str, str], redactor: Redactor
    ) -> ProviderError:
        body = decode_body(content)
        error = error_from_response(
            self.name, status, content, headers, redactor, retry_after=retry_delay(body)
        )
        if status == 400 and _bad_api_key(body):  # Google answers a bad key with a 400
            error.kind, error.status = ErrorKind.AUTH, 401
        return error

    def _prepare(self, request: ProviderRequest, method: str) -> tuple[str, bytes, dict[str, str]]:
        body = translate_chat(self.name, request, chat_to_gemini)
        model = request.body.get("model") or self.model
        headers = {**request.headers, **self._headers} if request.headers else self._headers
        return f"{self._models}/{quote(str(model), safe='')}:{method}", orjson.dumps(body), headers

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        url, content, headers = self._prepare(request, "generateContent")
        response = await self.http.post(url, content, headers, request.timeouts)
        try:
            body = gemini_to_chat(orjson.loads(response.content), request.body.get("model"))
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            raise ProviderError(
                ErrorKind.SERVER, 502, f"{self.name} upstream sent a malformed answer"
            ) from None
        return ProviderResponse(body=body, usage=usage_from_openai(body["usage"]))

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamChunk]:
        url, content, headers = self._prepare(request, "streamGenerateContent")
        include_usage = bool((request.body.get("stream_options") or {}).get("include_usage"))
        translator = GeminiStreamToChat(request.body.get("model"))
        started = time.monotonic()
        sent = False
        async with self.http.stream(f"{url}?alt=sse", content, headers, request.timeouts) as r:
            try:
                async for _event, data in iter_sse(
                    iter_bytes(self.name, r, request.timeouts, started)
                ):
                    event = orjson.loads(data)
                    if isinstance(event, dict) and event.get("error"):
                        error = event["error"]
                        raise self._error(
                            int(error.get("code") or 500), data, {}, self.http.redactor
                        )
                    for chunk in translator.feed(event):
                        sent = True
                        yield StreamChunk(data=chunk)
            except ProviderError as error:
                raise (mid_stream(error) if sent else error) from None
            except orjson.JSONDecodeError:
                error = ProviderError(ErrorKind.SERVER, 502, f"{self.name} sent a malformed event")
                raise (mid_stream(error) if sent else error) from None
        usage = usage_from_openai(translator.usage)
        yield StreamChunk(translator.usage_chunk() if include_usage else None, usage=usage)

    async def aclose(self) -> None:
        await self.http.aclose()
