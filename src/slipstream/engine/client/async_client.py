"""`AsyncEngineClient`: the front end's handle on an engine process.

It spawns the engine process (`process_handle`), talks to it over a Unix socket
(`connection`, protocol in `engine/ipc.py`) and turns the engine's token deltas into text
deltas (`detokenize`), timing each request for an observer (`observer`). A consumer that
stops iterating (a client disconnect) aborts its request at once, so its KV blocks are freed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from slipstream.engine.client.connection import EngineConnection, RequestStream
from slipstream.engine.client.detokenize import TextDeltas, TextTokenizer
from slipstream.engine.client.observer import RequestObserver
from slipstream.engine.client.process_handle import EngineProcessHandle
from slipstream.engine.config import EngineConfig
from slipstream.engine.generation import (
    EngineDeadError,
    EngineStartupError,
    GenerationDelta,
    GenerationRequest,
)
from slipstream.engine.ipc import AddRequest, EngineReady, EngineStartupFailed, read_message
from slipstream.engine.stop_strings import StopTextMatcher
from slipstream.engine.types import EngineStats, ModelInfo


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
        self._model_info: ModelInfo | None = None
        self._startup_timeout_s = startup_timeout_s
        self._process = EngineProcessHandle(config)
        self._connection = EngineConnection(
            self._process, observer=lambda: self.observer, token_text=self.token_text
        )
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
        listener = self._process.spawn()
        deadline = time.monotonic() + self._startup_timeout_s
        try:
            conn = await asyncio.to_thread(self._process.accept, listener, deadline)
            reader, writer = await asyncio.open_unix_connection(sock=conn)
            self._connection.attach(writer)
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
        self._connection.start_reading(reader)

    async def shutdown(self) -> None:
        """Stop the engine process; in-flight requests fail with EngineDeadError."""
        await self._connection.shutdown()
        await self._stop_process()

    async def _stop_process(self) -> None:
        await self._process.stop()
        self._connection.close()
        self._process.remove_socket_dir()

    # --- state -------------------------------------------------------------------------

    @property
    def model_info(self) -> ModelInfo:
        if self._model_info is None:
            raise EngineDeadError("engine not started")
        return self._model_info

    @property
    def stats(self) -> EngineStats:
        """The engine's latest numbers (running, waiting, KV use), sent with every step."""
        return self._connection.stats

    @property
    def is_alive(self) -> bool:
        return self._connection.is_open and self._process.is_alive()

    @property
    def dead_reason(self) -> str | None:
        return self._connection.dead_reason

    @property
    def num_outstanding(self) -> int:
        return len(self._connection.streams)

    # --- requests ----------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """Yield text deltas until the request finishes. Closing the iterator aborts it."""
        reason = self.dead_reason
        if reason is not None:
            raise EngineDeadError(reason)
        connection = self._connection
        if request.request_id in connection.streams:
            raise ValueError(f"duplicate request id {request.request_id!r}")
        stream = RequestStream(
            TextDeltas(
                request=request,
                detokenizer=self.tokenizer.new_detokenizer(),
                matcher=StopTextMatcher(request.stop, request.include_stop_str_in_output),
                num_prompt_tokens=len(request.prompt_token_ids),
            )
        )
        connection.streams[request.request_id] = stream
        try:
            connection.send(
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
            connection.streams.pop(request.request_id, None)
            if not stream.engine_done and connection.is_open:
                stream.engine_done = True
                connection.abort(request.request_id)

    def token_text(self, token_id: int) -> str:
        """The text of one token as OpenAI shows it in logprobs (cached per id)."""
        text = self._token_text.get(token_id)
        if text is None:
            text = self.tokenizer.id_to_piece(token_id)
            self._token_text[token_id] = text
        return text
