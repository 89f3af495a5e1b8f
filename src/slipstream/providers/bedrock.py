"""AWS Bedrock Converse and ConverseStream.

Requests are signed with SigV4 (botocore's `SigV4Auth`, service `bedrock`) per call, since the
signature covers the body and the time; a Bedrock API key (bearer token) works instead when no
access key is configured. ConverseStream answers in the binary
`application/vnd.amazon.eventstream` framing — prelude (lengths + CRC), headers, JSON
payload, message CRC — which botocore's `EventStreamBuffer` parses and checksums.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Mapping
from urllib.parse import quote

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer, ParserError

from slipstream.providers.base import (
    ErrorKind,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    StreamChunk,
    Timeouts,
)
from slipstream.providers.bedrock_format import (
    ConverseStreamToChat,
    chat_to_converse,
    converse_to_chat,
)
from slipstream.providers.http_transport import UpstreamHTTP, iter_bytes
from slipstream.providers.openai_compat import usage_from_openai
from slipstream.providers.upstream_errors import (
    Redactor,
    error_from_response,
    mid_stream,
    translate_chat,
)

# Bedrock exception names → status, for errors that arrive inside the event stream.
_EXCEPTION_STATUS = {
    "throttlingException": 429,
    "serviceUnavailableException": 503,
    "internalServerException": 500,
    "modelStreamErrorException": 502,
    "modelTimeoutException": 408,
    "validationException": 400,
    "accessDeniedException": 403,
    "resourceNotFoundException": 404,
}
_SERVER_SIDE_TYPES = ("ModelErrorException", "ModelNotReadyException", "ModelStreamErrorException")


class QuietSigV4Auth(SigV4Auth):
    """`SigV4Auth.add_auth` without its DEBUG logging: botocore logs the canonical request,
    which carries the session token, and credentials must never reach a log."""

    def add_auth(self, request: AWSRequest) -> None:
        request.context["timestamp"] = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self._modify_request_before_signing(request)
        signature = self.signature(
            self.string_to_sign(request, self.canonical_request(request)), request
        )
        self._inject_signature_to_request(request, signature)


class BedrockProvider:
    name = "bedrock"

    def __init__(
        self,
        *,
        region: str,
        model: str | None = None,
        api_base: str | None = None,
        api_key: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeouts: Timeouts | None = None,
        secrets: Iterable[str] = (),
        http: UpstreamHTTP | None = None,
    ) -> None:
        self.region = region
        self.model = model
        self.api_base = (api_base or f"https://bedrock-runtime.{region}.amazonaws.com").rstrip("/")
        self.timeouts = timeouts or Timeouts()
        self._headers = dict(headers or {})
        self._signer: QuietSigV4Auth | None = None
        if aws_access_key_id and aws_secret_access_key:
            credentials = Credentials(aws_access_key_id, aws_secret_access_key, aws_session_token)
            self._signer = QuietSigV4Auth(credentials, "bedrock", region)
        elif api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        redactor = Redactor.of([api_key, aws_secret_access_key, aws_session_token, *secrets])
        self.http = http or UpstreamHTTP(self.name, redactor, error_mapper=self._error)

    def _error(self, status: int, content: bytes, headers: Mapping[str, str]) -> ProviderError:
        error = error_from_response(self.name, status, content, headers, self.http.redactor)
        error_type = headers.get("x-amzn-errortype", "").split(":", 1)[0]
        if error_type in _SERVER_SIDE_TYPES:
            error.kind, error.status = ErrorKind.SERVER, 502 if status < 500 else status
        return error

    def _prepare(self, request: ProviderRequest, action: str) -> tuple[str, bytes, dict[str, str]]:
        body = translate_chat(self.name, request, chat_to_converse)
        model = str(request.body.get("model") or self.model)
        url = f"{self.api_base}/model/{quote(model, safe='')}/{action}"
        content = orjson.dumps(body)
        accept = (
            "application/vnd.amazon.eventstream"
            if action == "converse-stream"
            else "application/json"
        )
        headers = {**self._headers, "content-type": "application/json", "accept": accept}
        if self._signer is not None:
            signed = AWSRequest(method="POST", url=url, data=content, headers=headers)
            self._signer.add_auth(signed)
            headers = dict(signed.headers.items())
        if request.headers:
            headers = {**request.headers, **headers}  # unsigned extras (x-request-id...)
        return url, content, headers

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        url, content, headers = self._prepare(request, "converse")
        response = await self.http.post(url, content, headers, request.timeouts)
        try:
            body = converse_to_chat(orjson.loads(response.content), request.body.get("model"))
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            raise ProviderError(
                ErrorKind.SERVER, 502, "bedrock upstream sent a malformed answer"
            ) from None
        return ProviderResponse(body=body, usage=usage_from_openai(body["usage"]))

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamChunk]:
        url, content, headers = self._prepare(request, "converse-stream")
        include_usage = bool((request.body.get("stream_options") or {}).get("include_usage"))
        translator = ConverseStreamToChat(request.body.get("model"))
        started = time.monotonic()
        sent = False
        buffer = EventStreamBuffer()
        async with self.http.stream(url, content, headers, request.timeouts) as response:
            try:
                async for piece in iter_bytes(self.name, response, request.timeouts, started):
                    buffer.add_data(piece)
                    for message in buffer:
                        for chunk in self._translate(translator, message.headers, message.payload):
                            sent = True
                            yield StreamChunk(data=chunk)
            except ProviderError as error:
                raise (mid_stream(error) if sent else error) from None
            except (ParserError, orjson.JSONDecodeError) as exc:
                error = ProviderError(
                    ErrorKind.SERVER,
                    502,
                    f"bedrock sent a corrupt event stream ({type(exc).__name__})",
                )
                raise (mid_stream(error) if sent else error) from None
        usage = usage_from_openai(translator.usage)
        yield StreamChunk(translator.usage_chunk() if include_usage else None, usage=usage)

    def _translate(
        self, translator: ConverseStreamToChat, headers: Mapping[str, object], payload: bytes
    ) -> list[dict]:
        kind = headers.get(":message-type")
        if kind == "event":
            return translator.feed(str(headers.get(":event-type")), orjson.loads(payload or b"{}"))
        if kind == "exception":
            name = str(headers.get(":exception-type"))
            message = str((orjson.loads(payload or b"{}") or {}).get("message", ""))
        else:  # "error"
            name = str(headers.get(":error-code"))
            message = str(headers.get(":error-message", ""))
        status = _EXCEPTION_STATUS.get(name, 500)
        return self._raise_stream_error(status, name, message)

    def _raise_stream_error(self, status: int, name: str, message: str) -> list[dict]:
        text = self.http.redactor.text(f"{name}: {message}")
        raise error_from_response(self.name, status, b"", {}, self.http.redactor, message=text)

    async def aclose(self) -> None:
        await self.http.aclose()
