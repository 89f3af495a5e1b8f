"""`slipstream serve` (the real `serve()` coroutine: gateway, front doors, uvicorn) in a
background thread on a free port, plus a capture of the structured log lines it writes."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from slipstream.engine.config import EngineConfig, SchedulerConfig
from slipstream.server.serve import ServeOptions, serve

from .upstream import free_port


def small_engine(**scheduler: int) -> EngineConfig:
    """SmolLM2 with a short context and a small KV pool: quick to start, cheap to fill."""
    return EngineConfig(
        model="smollm2-135m",
        max_model_len=512,
        scheduler=SchedulerConfig(
            **{"max_num_batched_tokens": 256, "max_num_seqs": 8, **scheduler}
        ),
    )


class LogCapture(logging.Handler):
    """Every formatted record of the `slipstream` loggers, at INFO and above."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.logger = logging.getLogger("slipstream")
        self._level = self.logger.level

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def __enter__(self) -> LogCapture:
        self.logger.addHandler(self)
        self.logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self._level)


@dataclass
class Served:
    base_url: str
    thread: threading.Thread
    holder: dict[str, Any] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return self.base_url + "/v1"

    def stop(self) -> None:
        server = self.holder.get("server")
        if server is not None:
            server.should_exit = True
        self.thread.join(60)


def start_serve(
    config_path: Path | None,
    engine: EngineConfig | None = None,
    *,
    max_queue: int = 16,
    timeout_s: float = 300,
) -> Served:
    """`config_path` None: the default config (the engine's model alone)."""
    port = free_port()
    options = ServeOptions(
        port=port,
        log_level="warning",
        max_queue=max_queue,
        config_path=str(config_path) if config_path is not None else None,
    )
    holder: dict[str, Any] = {}

    def target() -> None:
        try:
            started = lambda s: holder.__setitem__("server", s)  # noqa: E731
            asyncio.run(serve(engine or small_engine(), options, started))
        except BaseException as exc:  # surfaced by the readiness loop
            holder["error"] = exc

    thread = threading.Thread(target=target, name=f"serve-{port}", daemon=True)
    thread.start()
    served = Served(f"http://127.0.0.1:{port}", thread, holder)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if "error" in holder:
            raise RuntimeError(f"serve failed to start: {holder['error']!r}")
        try:
            if httpx.get(served.base_url + "/health", timeout=2).status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    served.stop()
    raise TimeoutError("serve did not become healthy")
