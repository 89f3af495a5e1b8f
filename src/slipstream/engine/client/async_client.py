"""`AsyncEngineClient`: the front end's handle on an engine process.

It spawns the engine process, talks to it over a Unix socket (see `ipc.py`) and turns the
engine's token deltas into text deltas. Detokenization and stop strings live here, not in
the engine: the engine only knows token ids, and keeping text work out of its loop keeps
the step time flat. Text that might be the start of a stop string is held back until it is
known not to be one; on a match the text is cut, the request finishes with "stop" and is
aborted in the engine. A consumer that stops iterating (a client disconnect) aborts its
request at once, so its KV blocks are freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from slipstream.engine.config import EngineConfig
from slipstream.engine.generation import (
    EngineDeadError,
    EngineStartupError,
    GenerationDelta,
    GenerationRequest,
    LogprobEntry,
    RequestRejectedError,
)
from slipstream.engine.ipc import (
    AbortRequests,
    AddRequest,
    EngineFailed,
    EngineReady,
    EngineStartupFailed,
    RequestFailed,
    Shutdown,
    StepResult,
    encode_frame,
    read_message,
)
from slipstream.engine.process import run_engine_process
from slipstream.engine.stop_strings import StopTextMatcher
from slipstream.engine.types import EngineStats, ModelInfo, RequestOutput

log = logging.getLogger("slipstream.engine.client")


class RequestObserver(Protocol):
    """Receives per-request timings (implemented by obs.metrics.ServingMetrics)."""

    def on_first_token(self, ttft_s: float, queue_time_s: float | None) -> None: ...
    def on_next_token(self, itl_s: float) -> None: ...
    def on_finished(
        self, finish_reason: str, e2e_s: float, prompt_tokens: int, completion_tokens: int
    ) -> None: ...


class TextTokenizer(Protocol):
    eos_token_ids: Any

    def id_to_piece(self, token_id: int) -> str: ...
    def new_detokenizer(self) -> Any: ...


@dataclass(eq=False)
class _Stream:
    """Front-end state of one in-flight request."""

    request: GenerationRequest
    detokenizer: Any
    matcher: StopTextMatcher
    arrival: float = field(default_factory=time.monotonic)
    queue: asyncio.Queue[GenerationDelta | BaseException] = field(default_factory=asyncio.Queue)
    engine_done: bool = False
    last_token_time: float | None = None
    num_prompt_tokens: int = 0
    num_cached_tokens: int = 0
    num_completion_tokens: int = 0
    pending_ids: list[int] = field(default_factory=list)
    pending_logprobs: list[LogprobEntry] = field(default_factory=list)


class AsyncEngineClient:
    """Spawns and drives one engine process from an asyncio event loop."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        tokenizer: TextTokenizer | None = None,
        observer: RequestObserver | None = None,
        startup_timeout_s: float = 600.0,
    ) -> None:
        self.config = config
        self.tokenizer: Any = tokenizer
        self.observer = observer
        self.stats = EngineStats()
        self._model_info: ModelInfo | None = None
        self._startup_timeout_s = startup_timeout_s
        self._streams: dict[str, _Stream] = {}
        self._process: Any = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._tmpdir: str | None = None
        self._dead_reason: str | None = "engine not started"
        self._token_text: dict[int, str] = {}

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Spawn the engine process, load the tokenizer, wait for the model to be ready."""
        if self.tokenizer is None:
            from slipstream.engine.loader import load_tokenizer

            # Fails fast (and without spawning anything) on a bad model name or path.
            try:
                self.tokenizer = await asyncio.to_thread(load_tokenizer, self.config.model)
            except ValueError as exc:
                raise EngineStartupError(str(exc)) from None
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
        deadline = time.monotonic() + self._startup_timeout_s
        try:
            conn = await asyncio.to_thread(self._accept, listener, deadline)
            reader, self._writer = await asyncio.open_unix_connection(sock=conn)
            first = await asyncio.wait_for(read_message(reader), deadline - time.monotonic())
        except BaseException:
            await self._stop_process()
            raise
        finally:
            listener.close()
        if not isinstance(first, EngineReady):
            await self._stop_process()
            if isinstance(first, EngineStartupFailed):
                raise EngineStartupError(first.message)
            raise EngineStartupError(
                f"engine process exited during start-up (exit code {self._process.exitcode})"
            )
        self._model_info = first.model_info
        self._dead_reason = None
        self._reader_task = asyncio.create_task(self._read_loop(reader), name="engine-reader")

    def _accept(self, listener: socket.socket, deadline: float) -> socket.socket:
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

    async def shutdown(self) -> None:
        """Stop the engine process; in-flight requests fail with EngineDeadError."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.write(encode_frame(Shutdown()))
                await self._writer.drain()
        self._fail_all("engine shut down")
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task
        await self._stop_process()

    async def _stop_process(self) -> None:
        process = self._process
        if process is not None:
            await asyncio.to_thread(process.join, 10)
            if process.is_alive():
                process.terminate()
                await asyncio.to_thread(process.join, 5)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join, 5)
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    # --- state -------------------------------------------------------------------------

    @property
    def model_info(self) -> ModelInfo:
        if self._model_info is None:
            raise EngineDeadError("engine not started")
        return self._model_info

    @property
    def is_alive(self) -> bool:
        return self._dead_reason is None and self._process is not None and self._process.is_alive()

    @property
    def dead_reason(self) -> str | None:
        if self._dead_reason is None and self._process is not None and not self._process.is_alive():
            return f"engine process exited (exit code {self._process.exitcode})"
        return self._dead_reason

    @property
    def num_outstanding(self) -> int:
        return len(self._streams)

    # --- requests ----------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """Yield text deltas until the request finishes. Closing the iterator aborts it."""
        reason = self.dead_reason
        if reason is not None:
            raise EngineDeadError(reason)
        if request.request_id in self._streams:
            raise ValueError(f"duplicate request id {request.request_id!r}")
        stream = _Stream(
            request=request,
            detokenizer=self.tokenizer.new_detokenizer(),
            matcher=StopTextMatcher(request.stop, request.include_stop_str_in_output),
            num_prompt_tokens=len(request.prompt_token_ids),
        )
        self._streams[request.request_id] = stream
        try:
            self._send(
                AddRequest(
                    request.request_id,
                    list(request.prompt_token_ids),
                    request.sampling,
                    request.cache_salt,
                )
            )
            while True:
                item = await stream.queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            self._streams.pop(request.request_id, None)
            if not stream.engine_done and self._dead_reason is None:
                stream.engine_done = True
                self._abort(request.request_id)

    def _send(self, message: object) -> None:
        if self._writer is None or self._writer.is_closing():
            raise EngineDeadError(self.dead_reason or "engine connection closed")
        self._writer.write(encode_frame(message))

    def _abort(self, request_id: str) -> None:
        with contextlib.suppress(EngineDeadError):
            self._send(AbortRequests([request_id]))

    # --- engine -> front end -----------------------------------------------------------

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        while True:
            message = await read_message(reader)
            if message is None:
                await asyncio.to_thread(self._process.join, 2)
                self._fail_all(
                    f"engine process exited unexpectedly (exit code {self._process.exitcode})"
                )
                return
            if isinstance(message, StepResult):
                self.stats = message.stats
                now = time.monotonic()
                for output in message.outputs:
                    self._dispatch(output, now)
            elif isinstance(message, RequestFailed):
                stream = self._streams.pop(message.request_id, None)
                if stream is not None:
                    stream.engine_done = True
                    stream.queue.put_nowait(RequestRejectedError(message.message))
            elif isinstance(message, EngineFailed):
                log.error("engine failed: %s", message.message)
                self._fail_all(message.message)
                return

    def _fail_all(self, reason: str) -> None:
        if self._dead_reason is None:
            self._dead_reason = reason
        for stream in self._streams.values():
            stream.engine_done = True
            stream.queue.put_nowait(EngineDeadError(reason))
        self._streams.clear()

    def _dispatch(self, output: RequestOutput, now: float) -> None:
        stream = self._streams.get(output.request_id)
        if stream is None or stream.engine_done:
            return  # finished or aborted on our side; a late delta from the engine
        try:
            delta = self._process_output(stream, output, now)
        except Exception as exc:
            log.exception("failed to process output of %s", output.request_id)
            self._streams.pop(output.request_id, None)
            stream.engine_done = True
            self._abort(output.request_id)
            stream.queue.put_nowait(exc)
            return
        if delta is not None:
            stream.queue.put_nowait(delta)

    def _process_output(
        self, stream: _Stream, output: RequestOutput, now: float
    ) -> GenerationDelta | None:
        if output.num_prompt_tokens:
            stream.num_prompt_tokens = output.num_prompt_tokens
        stream.num_cached_tokens = max(stream.num_cached_tokens, output.num_cached_tokens)
        new_ids = list(output.new_token_ids)
        if new_ids:
            self._observe_tokens(stream, output, now)
        stream.num_completion_tokens += len(new_ids)
        stream.pending_ids.extend(new_ids)
        if output.new_logprobs:
            stream.pending_logprobs.extend(self._logprob_entry(lp) for lp in output.new_logprobs)
        new_text = stream.detokenizer.push(new_ids) if new_ids else ""
        if output.finish_reason is not None:
            new_text += stream.detokenizer.flush()  # a truncated character at the very end
        text, stopped = stream.matcher.feed(new_text)
        finish = output.finish_reason
        if stopped:
            finish = "stop"
            if output.finish_reason is None:
                self._abort(output.request_id)
        elif finish is not None:
            text += stream.matcher.flush()
        if finish is not None:
            stream.engine_done = True
            self._streams.pop(output.request_id, None)
            if self.observer is not None:
                self.observer.on_finished(
                    finish,
                    now - stream.arrival,
                    stream.num_prompt_tokens,
                    stream.num_completion_tokens,
                )
        elif not text:
            return None  # held back (stop-string prefix or incomplete character): carry over
        wants_logprobs = stream.request.sampling.logprobs is not None
        delta = GenerationDelta(
            text=text,
            token_ids=stream.pending_ids,
            logprobs=stream.pending_logprobs if wants_logprobs else None,
            finish_reason=finish,
            num_prompt_tokens=stream.num_prompt_tokens,
            num_cached_tokens=stream.num_cached_tokens,
            num_completion_tokens=stream.num_completion_tokens,
        )
        stream.pending_ids = []
        stream.pending_logprobs = []
        return delta

    def _observe_tokens(self, stream: _Stream, output: RequestOutput, now: float) -> None:
        if self.observer is not None:
            if stream.last_token_time is None:
                self.observer.on_first_token(now - stream.arrival, output.queue_time_s)
            else:
                self.observer.on_next_token(now - stream.last_token_time)
        stream.last_token_time = now

    def _logprob_entry(self, lp: Any) -> LogprobEntry:
        return LogprobEntry(
            token=self.token_text(lp.token_id),
            token_id=lp.token_id,
            logprob=lp.logprob,
            top=tuple((self.token_text(tid), tid, value) for tid, value in lp.top),
        )

    def token_text(self, token_id: int) -> str:
        """The text of one token as OpenAI shows it in logprobs (cached per id)."""
        text = self._token_text.get(token_id)
        if text is None:
            text = self.tokenizer.id_to_piece(token_id)
            self._token_text[token_id] = text
        return text
