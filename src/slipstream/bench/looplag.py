"""Event-loop lag probe: how long a ready callback waits for the loop.

Every ``interval`` seconds the probe queues a callback with ``call_soon`` and measures how long
it takes to run. That wait bounds how late a data_received stamp can be, so it is the client's
own timestamp error; a high value means the client, not the server, set the numbers.
"""

from __future__ import annotations

import asyncio
from time import perf_counter


class LoopLagProbe:
    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._handle: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_later(self.interval, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        self._loop.call_soon(self._tock, perf_counter())

    def _tock(self, queued: float) -> None:
        assert self._loop is not None
        self.samples.append(perf_counter() - queued)
        self._handle = self._loop.call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
