"""Fake upstreams for provider contract tests: a Starlette app per provider on 127.0.0.1,
served by uvicorn in a background thread; and the canary-secret check."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
import uvicorn

T = TypeVar("T")

# A credential that must never show up in an exception text, a repr or a log line.
CANARY = "sk-canary-7f3e91c2d4b5a6e8-DO-NOT-LEAK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused_url() -> str:
    """A URL on a port with nothing listening (connection refused)."""
    return f"http://127.0.0.1:{free_port()}"


class FakeUpstream:
    """uvicorn serving `app` in a daemon thread; `url` is its base URL."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])), daemon=True
        )

    def __enter__(self) -> FakeUpstream:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("fake upstream did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def assert_no_canary(error: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    """The canary secret appears in neither the exception nor any captured log line."""
    assert CANARY not in str(error)
    assert CANARY not in repr(error)
    assert CANARY not in caplog.text
    for record in caplog.records:
        assert CANARY not in record.getMessage()
