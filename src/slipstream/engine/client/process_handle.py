"""The engine child process: spawned with a private socket directory, accepted, stopped.

The engine runs in a `spawn`ed process (no forked CUDA or torch state) that connects back
to a Unix socket in a fresh temporary directory. Accepting is a blocking call run in a
thread that gives up as soon as the child dies, so a model that fails to load is reported
at once instead of after the start-up timeout. Stopping joins, then terminates, then kills.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import socket
import tempfile
import time
from typing import Any

from slipstream.engine.config import EngineConfig
from slipstream.engine.generation import EngineStartupError
from slipstream.engine.process import run_engine_process


class EngineProcessHandle:
    """One engine process and its socket directory; nothing is running until `spawn`."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._process: Any = None
        self._tmpdir: str | None = None

    @property
    def started(self) -> bool:
        return self._process is not None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def exitcode(self) -> int | None:
        return self._process.exitcode if self._process is not None else None

    def is_alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def spawn(self) -> socket.socket:
        """Listen on a fresh socket and start the child; returns the listener to `accept` on."""
        self._tmpdir = tempfile.mkdtemp(prefix="slipstream-engine-")
        path = os.path.join(self._tmpdir, "engine.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        ctx = multiprocessing.get_context("spawn")
        self._process = ctx.Process(
            target=run_engine_process,
            args=(self.config, path),
            name="slipstream-engine",
            daemon=True,
        )
        self._process.start()
        return listener

    def accept(self, listener: socket.socket, deadline: float) -> socket.socket:
        """Blocking accept (run in a thread) that gives up if the child dies or time runs out."""
        listener.settimeout(0.5)
        while True:
            if not self._process.is_alive():
                raise EngineStartupError(
                    f"engine process exited before connecting (exit code {self._process.exitcode})"
                )
            if time.monotonic() > deadline:
                raise EngineStartupError("timed out waiting for the engine process to start")
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.setblocking(False)
            return conn

    async def join(self, timeout: float) -> None:
        await asyncio.to_thread(self._process.join, timeout)

    async def stop(self) -> None:
        """Wait for the child to exit (after a Shutdown), else terminate it, else kill it."""
        process = self._process
        if process is not None:
            await asyncio.to_thread(process.join, 10)
            if process.is_alive():
                process.terminate()
                await asyncio.to_thread(process.join, 5)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join, 5)

    def remove_socket_dir(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
