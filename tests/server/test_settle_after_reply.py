"""A non-streaming answer is sent before the gateway's bookkeeping runs, and the bookkeeping
runs even if sending fails (else a concurrency slot or a budget reservation would leak)."""

from __future__ import annotations

import asyncio

import pytest

from slipstream.server.replies import SettleAfterReply


def test_the_bookkeeping_runs_after_the_body_was_sent() -> None:
    events: list[str] = []

    async def send(message: dict) -> None:  # type: ignore[type-arg]
        events.append(message["type"])

    async def finish() -> None:
        events.append("finish")

    async def receive() -> dict:  # type: ignore[type-arg]
        return {"type": "http.disconnect"}

    reply = SettleAfterReply(b"{}", 200, finish)
    asyncio.run(reply({"type": "http"}, receive, send))
    assert events == ["http.response.start", "http.response.body", "finish"]


def test_the_bookkeeping_runs_when_sending_fails() -> None:
    done = []

    async def send(message: dict) -> None:  # type: ignore[type-arg]
        raise OSError("connection reset")

    async def finish() -> None:
        done.append(True)

    async def receive() -> dict:  # type: ignore[type-arg]
        return {"type": "http.disconnect"}

    with pytest.raises(OSError):
        asyncio.run(SettleAfterReply(b"{}", 200, finish)({"type": "http"}, receive, send))
    assert done == [True]
