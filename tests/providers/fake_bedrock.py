"""A fake Bedrock runtime: `/model/{id}/converse` and `/model/{id}/converse-stream` answering
in the binary `application/vnd.amazon.eventstream` framing (prelude, string headers, JSON
payload, CRC32s). Every request's SigV4 signature is recomputed with botocore from the
headers it names, so a wrong or missing signature is a 403 as on AWS."""

from __future__ import annotations

import binascii
import re
import struct
from collections.abc import AsyncIterator
from typing import Any

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

ERRORS = {
    429: "ThrottlingException",
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
    424: "ModelErrorException",
}
USAGE = {"inputTokens": 9, "outputTokens": 4, "totalTokens": 13, "cacheReadInputTokens": 3}
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
    r"SignedHeaders=([^,]+), Signature=([0-9a-f]+)"
)


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: total length, headers length, prelude CRC, headers
    (name, type 7 = string, value), payload, message CRC."""
    encoded = b"".join(
        bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode()
        for k, v in headers.items()
    )
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message))


def event(name: str, body: dict[str, Any]) -> bytes:
    headers = {":event-type": name, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, orjson.dumps({**body, "p": "abcdefgh"}))


def exception(name: str, message: str) -> bytes:
    headers = {
        ":exception-type": name,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, orjson.dumps({"message": message}))


async def stream(model: str) -> AsyncIterator[bytes]:
    if model == "error-first":
        yield exception("throttlingException", "Too many requests")
        return
    start = event("messageStart", {"role": "assistant"})
    for i in range(0, len(start), 7):  # a message split across many network reads
        yield start[i : i + 7]
    if model == "tools":
        use = {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}}
        yield event("contentBlockStart", {"contentBlockIndex": 0, "start": use})
        for part in ('{"city":', '"Paris"}'):
            yield event(
                "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": part}}}
            )
        yield event("contentBlockStop", {"contentBlockIndex": 0})
        stop = "tool_use"
    else:
        hello = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello"}})
        if model == "corrupt":
            yield hello[:-1] + bytes([hello[-1] ^ 0xFF])  # a bad message CRC
            return
        yield hello
        if model == "error-mid":
            yield exception("modelStreamErrorException", "model stream broke")
            return
        yield event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " there"}})
        yield event("contentBlockStop", {"contentBlockIndex": 0})
        stop = "end_turn"
    yield event("messageStop", {"stopReason": stop}) + event(
        "metadata", {"usage": USAGE, "metrics": {"latencyMs": 42}}
    )


def error(status: int, message: str) -> Response:
    kind = ERRORS.get(status, "InternalServerException")
    return JSONResponse(
        {"message": message},
        status_code=status,
        headers={
            "x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"
        },
    )


def verify_sigv4(
    request: Request, raw: bytes, secrets: dict[str, tuple[str, str | None]], region: str
) -> str | None:
    """None when the signature is right, else why not."""
    match = _AUTH.fullmatch(request.headers.get("authorization", ""))
    if not match:
        return "Missing or malformed SigV4 Authorization header"
    access_key, _day, sig_region, service, signed, signature = match.groups()
    if access_key not in secrets or sig_region != region or service != "bedrock":
        return "The security token included in the request is invalid"
    secret, token = secrets[access_key]
    if token is not None and request.headers.get("x-amz-security-token") != token:
        return "The security token included in the request is invalid"
    names = signed.split(";")
    host = request.headers["host"]
    url = f"http://{host}{request.scope['raw_path'].decode()}"
    aws = AWSRequest(
        method="POST",
        url=url,
        data=raw,
        headers={n: request.headers[n] for n in names if n != "host"},
    )
    aws.context["timestamp"] = request.headers["x-amz-date"]
    signer = SigV4Auth(Credentials(access_key, secret, token), "bedrock", region)
    expected = signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)
    if expected != signature:
        return "The request signature we calculated does not match the signature you provided"
    return None


def make_app(secrets: dict[str, tuple[str, str | None]], bearer: str, region: str) -> Starlette:
    """`secrets`: access key id → (secret key, session token); `bearer`: a Bedrock API key."""
    received: list[dict[str, Any]] = []

    async def handle(request: Request) -> Response:
        raw = await request.body()
        model, action = request.path_params["model"], request.path_params["action"]
        received.append(
            {
                "body": orjson.loads(raw),
                "headers": dict(request.headers),
                "raw_path": request.scope["raw_path"],
                "model": model,
            }
        )
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            if auth != f"Bearer {bearer}":
                return error(403, f"Invalid API key: {auth[7:]}")
        else:
            problem = verify_sigv4(request, raw, secrets, region)
            if problem:
                return error(403, problem)
        if model.startswith("fail-"):
            status = int(model.split("-")[1])
            if model.endswith("-ctx"):
                return error(400, "Input is too long for requested model.")
            return error(status, f"upstream says {status}")
        if action == "converse-stream":
            return StreamingResponse(stream(model), media_type="application/vnd.amazon.eventstream")
        content: list[dict[str, Any]] = [{"text": "Hello there"}]
        stop = "end_turn"
        if model == "tools":
            content = [
                {
                    "toolUse": {
                        "toolUseId": "tooluse_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    }
                }
            ]
            stop = "tool_use"
        return JSONResponse(
            {
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop,
                "usage": USAGE,
                "metrics": {"latencyMs": 42},
            }
        )

    app = Starlette(routes=[Route("/model/{model}/{action}", handle, methods=["POST"])])
    app.state.received = received
    return app
