"""Run the API server and its engine process together in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn

from slipstream.engine.client import AsyncEngineClient
from slipstream.engine.config import EngineConfig
from slipstream.obs.metrics import ServingMetrics
from slipstream.server.app import create_app
from slipstream.server.state import DEFAULT_MAX_QUEUE


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    served_model_name: str | None = None  # None: the engine config's model name
    max_queue: int = DEFAULT_MAX_QUEUE
    log_level: str = "info"


async def serve(
    engine_config: EngineConfig,
    options: ServeOptions,
    on_started: Callable[[uvicorn.Server], None] | None = None,
) -> None:
    """Start the engine (raises EngineStartupError if the model cannot load), then serve
    HTTP until the server is told to exit; the engine process is stopped on the way out."""
    client = AsyncEngineClient(engine_config)
    metrics = ServingMetrics(lambda: client.stats)
    client.observer = metrics
    await client.start()
    try:
        app = create_app(
            client,
            options.served_model_name or engine_config.model,
            max_queue=options.max_queue,
            metrics_registry=metrics,
        )
        config = uvicorn.Config(
            app,
            host=options.host,
            port=options.port,
            log_level=options.log_level,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        if on_started is not None:
            on_started(server)
        await server.serve()
    finally:
        await client.shutdown()


def run(engine_config: EngineConfig, options: ServeOptions) -> None:
    """Blocking entry point for the CLI: uvloop when installed, else the default loop."""
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(engine_config, options))
