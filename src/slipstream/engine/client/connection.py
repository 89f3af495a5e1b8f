"""The socket to a started engine process: frames out, messages in, one queue per request.

One reader task reads every message of the engine (see `ipc.py`) and hands each request's
text deltas to that request's queue; the request side only sends frames (add, abort,
shutdown) and never blocks. When the engine fails or its process exits, every in-flight
request fails with `EngineDeadError` and so does every later one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from slipstream.engine.client.detokenize import TextDeltas
from slipstream.engine.client.observer import RequestObserver, RequestTiming
from slipstream.engine.client.process_handle import EngineProcessHandle
from slipstream.engine.generation import EngineDeadError, GenerationDelta, RequestRejectedError
from slipstream.engine.ipc import (
    AbortRequests,
    EngineFailed,
    RequestFailed,
    Shutdown,
    StepResult,
    encode_frame,
    read_message,
)
from slipstream.engine.types import EngineStats, RequestOutput

log = logging.getLogger("slipstream.engine.client")


@dataclass(eq=False)
class RequestStream:
    """Front-end state of one in-flight request."""

    text: TextDeltas
    timing: RequestTiming = field(default_factory=RequestTiming)
    queue: asyncio.Queue[GenerationDelta | BaseException] = field(default_factory=asyncio.Queue)
    engine_done: bool = False


class EngineConnection:
    """Sends frames to the engine and routes what it answers to the in-flight requests."""

    def __init__(
        self,
        process: EngineProcessHandle,
        *,
        observer: Callable[[], RequestObserver | None],
        token_text: Callable[[int], str],
    ) -> None:
        self.stats = EngineStats()
        self.streams: dict[str, RequestStream] = {}
        self._dead_reason: str | None = "engine not started"
        self._process = process
        self._observer = observer
        self._token_text = token_text
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    def attach(self, writer: asyncio.StreamWriter) -> None:
        """The connected socket's writer, as soon as the engine process connected."""
        self._writer = writer

    def start_reading(self, reader: asyncio.StreamReader) -> None:
        """The engine is ready: requests may be sent and its messages are read from now on."""
        self._dead_reason = None
        self._reader_task = asyncio.create_task(self._read_loop(reader), name="engine-reader")

    @property
    def is_open(self) -> bool:
        """Started and not failed (the process may still have exited unseen)."""
        return self._dead_reason is None

    @property
    def dead_reason(self) -> str | None:
        """Why requests cannot run, the process having exited included; None while they can."""
        if self._dead_reason is None and self._process.started and not self._process.is_alive():
            return f"engine process exited (exit code {self._process.exitcode})"
        return self._dead_reason

    # --- front end -> engine -----------------------------------------------------------

    def send(self, message: object) -> None:
        if self._writer is None or self._writer.is_closing():
            raise EngineDeadError(self.dead_reason or "engine connection closed")
        self._writer.write(encode_frame(message))

    def abort(self, request_id: str) -> None:
        with contextlib.suppress(EngineDeadError):
            self.send(AbortRequests([request_id]))

    async def shutdown(self) -> None:
        """Ask the engine to stop, fail what is in flight and stop reading."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.write(encode_frame(Shutdown()))
                await self._writer.drain()
        self.fail_all("engine shut down")
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task

    def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None

    # --- engine -> front end -----------------------------------------------------------

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        while True:
            message = await read_message(reader)
            if message is None:
                await self._process.join(2)
                self.fail_all(
                    f"engine process exited unexpectedly (exit code {self._process.exitcode})"
                )
                return
            if isinstance(message, StepResult):
                self.stats = message.stats
                now = time.monotonic()
                for output in message.outputs:
                    self._dispatch(output, now)
            elif isinstance(message, RequestFailed):
                stream = self.streams.pop(message.request_id, None)
                if stream is not None:
                    stream.engine_done = True
                    stream.queue.put_nowait(RequestRejectedError(message.message))
            elif isinstance(message, EngineFailed):
                log.error("engine failed: %s", message.message)
                self.fail_all(message.message)
                return

    def fail_all(self, reason: str) -> None:
        if self._dead_reason is None:
            self._dead_reason = reason
        for stream in self.streams.values():
            stream.engine_done = True
            stream.queue.put_nowait(EngineDeadError(reason))
        self.streams.clear()

    def _dispatch(self, output: RequestOutput, now: float) -> None:
        stream = self.streams.get(output.request_id)
        if stream is None or stream.engine_done:
            return  # finished or aborted on our side; a late delta from the engine
        try:
            delta = self._process_output(stream, output, now)
        except Exception as exc:
            log.exception("failed to process output of %s", output.request_id)
            self.streams.pop(output.request_id, None)
            stream.engine_done = True
            self.abort(output.request_id)
            stream.queue.put_nowait(exc)
            return
        if delta is not None:
            stream.queue.put_nowait(delta)

    def _process_output(
        self, stream: RequestStream, output: RequestOutput, now: float
    ) -> GenerationDelta | None:
        if output.new_token_ids:
            stream.timing.tokens(self._observer(), output.queue_time_s, now)
        text, finish, stopped = stream.text.push(output, self._token_text)
        if stopped and output.finish_reason is None:
            self.abort(output.request_id)  # the engine would run on to max_tokens
        if finish is not None:
            stream.engine_done = True
            self.streams.pop(output.request_id, None)
            counts = stream.text
            stream.timing.finished(
                self._observer(),
                finish,
                now,
                counts.num_prompt_tokens,
                counts.num_completion_tokens,
            )
        elif not text:
            return None  # held back (stop-string prefix or incomplete character): carry over
        return stream.text.take(text, finish)
