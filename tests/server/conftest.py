"""A real API server (real engine process, real HTTP, the default gateway config) in a
background thread, per test module."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from tests.gateway.serve_harness import Served, small_engine, start_serve

from slipstream.engine.config import EngineConfig


@pytest.fixture(scope="module")
def server_factory() -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def make(engine_config: EngineConfig | None = None, max_queue: int = 16) -> Served:
        server = start_serve(None, engine_config or small_engine(), max_queue=max_queue)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
