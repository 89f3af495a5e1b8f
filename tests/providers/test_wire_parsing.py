"""Retry-After parsing, status classification and SSE splitting."""

from __future__ import annotations

import email.utils
import time

from tests.providers.upstream_server import run

from slipstream.providers.base import ErrorKind
from slipstream.providers.sse_reader import iter_sse
from slipstream.providers.upstream_errors import (
    Redactor,
    classify_status,
    error_from_response,
    parse_retry_after,
)


def test_retry_after_forms():
    assert parse_retry_after({"retry-after": "12"}) == 12.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    future = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 < parse_retry_after({"retry-after": future}) <= 60
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    assert parse_retry_after({"retry-after": past}) == 0.0
    assert parse_retry_after({"x-ratelimit-reset-requests": "6m0s"}) == 360.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_classification_table():
    assert classify_status(429, "") == (ErrorKind.RATE_LIMITED, 429)
    assert classify_status(502, "") == (ErrorKind.SERVER, 502)
    assert classify_status(408, "") == (ErrorKind.TIMEOUT, 504)
    assert classify_status(401, "") == (ErrorKind.AUTH, 401)
    assert classify_status(404, "") == (ErrorKind.NOT_FOUND, 404)
    assert classify_status(400, "Prompt is too long") == (ErrorKind.CONTEXT_WINDOW, 400)
    assert classify_status(400, "bad temperature") == (ErrorKind.BAD_REQUEST, 400)
    assert classify_status(409, "conflict") == (ErrorKind.BAD_REQUEST, 409)


def test_redaction_reaches_nested_bodies():
    content = b'{"error": {"message": "key sk-secret-1 is wrong", "param": ["sk-secret-1"]}}'
    error = error_from_response("openai", 401, content, {}, Redactor.of(["sk-secret-1"]))
    assert "sk-secret-1" not in repr(error) and "[REDACTED]" in error.message
    assert error.upstream_body == {
        "error": {"message": "key [REDACTED] is wrong", "param": ["[REDACTED]"]}
    }


def test_sse_split_across_reads_crlf_multiline_and_comments():
    stream = b': keep-alive\r\n\r\nevent: a\r\ndata: {"x":\r\ndata: 1}\r\n\r\ndata: [DONE]\n\n'

    async def pieces():
        for i in range(len(stream)):
            yield stream[i : i + 1]

    async def go():
        return [e async for e in iter_sse(pieces())]

    assert run(go()) == [(b"a", b'{"x":\n1}'), (None, b"[DONE]")]
