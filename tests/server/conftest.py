"""A real API server (real engine process, real HTTP) in a background thread, per test module."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from slipstream.engine.config import EngineConfig, SchedulerConfig
from slipstream.server.serve import ServeOptions, serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    base_url: str
    thread: threading.Thread
    holder: dict = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return self.base_url + "/v1"

    def stop(self) -> None:
        server = self.holder.get("server")
        if server is not None:
            server.should_exit = True
        self.thread.join(60)


def start_server(
    engine_config: EngineConfig, max_queue: int = 16, timeout_s: float = 300.0
) -> RunningServer:
    port = free_port()
    holder: dict = {}
    options = ServeOptions(port=port, max_queue=max_queue, log_level="warning")

    def target() -> None:
        try:
            asyncio.run(serve(engine_config, options, lambda s: holder.__setitem__("server", s)))
        except BaseException as exc:  # surfaced by the readiness loop below
            holder["error"] = exc

    thread = threading.Thread(target=target, name=f"api-server-{port}", daemon=True)
    thread.start()
    running = RunningServer(f"http://127.0.0.1:{port}", thread, holder)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if "error" in holder:
            raise RuntimeError(f"server failed to start: {holder['error']!r}")
        try:
            if httpx.get(running.base_url + "/health", timeout=2).status_code == 200:
                return running
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    running.stop()
    raise TimeoutError("server did not become healthy")


def small_engine_config(**scheduler: int) -> EngineConfig:
    """SmolLM2 with a short context and a small KV pool: quick to start, cheap to fill."""
    return EngineConfig(
        model="smollm2-135m",
        max_model_len=512,
        scheduler=SchedulerConfig(
            **{"max_num_batched_tokens": 256, "max_num_seqs": 8, **scheduler}
        ),
    )


@pytest.fixture(scope="module")
def server_factory() -> Iterator[Callable[..., RunningServer]]:
    started: list[RunningServer] = []

    def make(engine_config: EngineConfig | None = None, **kwargs) -> RunningServer:
        server = start_server(engine_config or small_engine_config(), **kwargs)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
