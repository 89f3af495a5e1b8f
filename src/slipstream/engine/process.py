"""The engine process: owns the `LLMEngine` and serves it over the local socket.

`run_engine_process` is the target of a multiprocessing "spawn" process. It connects back to
the front end's Unix socket, loads the model, says `EngineReady`, then loops: take new messages
(without blocking while there is work), run one `step()`, send its outputs and stats as one
`StepResult`. A reader thread turns the socket into a queue so the loop never blocks on a
half-read message; when the front end goes away the thread posts `Shutdown` and the process
exits. A crash in `step()` is logged and reported as `EngineFailed` before the process exits,
so the front end fails its in-flight requests instead of hanging.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import sys
import threading
import traceback
from typing import Protocol

from slipstream.engine.config import EngineConfig
from slipstream.engine.ipc import (
    AbortRequests,
    AddRequest,
    BlockingChannel,
    EngineFailed,
    EngineReady,
    EngineStartupFailed,
    RequestFailed,
    Shutdown,
    StepResult,
)
from slipstream.engine.types import EngineStats, RequestOutput, SamplingParams

log = logging.getLogger("slipstream.engine.process")


class StepEngine(Protocol):
    """What the loop needs from `LLMEngine` (a protocol so the loop is testable on its own)."""

    def add_request(
        self,
        request_id: str,
        prompt_token_ids: list[int],
        sampling: SamplingParams,
        cache_salt: str | None = None,
    ) -> None: ...
    def abort_requests(self, request_ids: list[str]) -> None: ...
    def has_unfinished(self) -> bool: ...
    def step(self) -> list[RequestOutput]: ...
    def stats(self) -> EngineStats: ...


class EngineLoop:
    """Drives one engine from the messages in `inbox`, answering on `channel`."""

    def __init__(
        self, engine: StepEngine, channel: BlockingChannel, inbox: queue.Queue[object]
    ) -> None:
        self._engine = engine
        self._channel = channel
        self._inbox = inbox

    def run(self) -> None:
        """Serve until `Shutdown` (or the front end disappears). Exceptions from step() propagate."""
        while True:
            messages = self._take_messages(block=not self._engine.has_unfinished())
            handled = 0
            for message in messages:
                if isinstance(message, Shutdown):
                    return
                self._handle(message)
                handled += 1
            if self._engine.has_unfinished():
                outputs = self._engine.step()
                self._channel.send(StepResult(outputs, self._engine.stats()))
            elif handled:
                # Nothing to run (e.g. an abort emptied the engine): still publish fresh stats.
                self._channel.send(StepResult([], self._engine.stats()))

    def _take_messages(self, block: bool) -> list[object]:
        messages: list[object] = []
        if block:
            messages.append(self._inbox.get())
        while True:
            try:
                messages.append(self._inbox.get_nowait())
            except queue.Empty:
                return messages

    def _handle(self, message: object) -> None:
        if isinstance(message, AddRequest):
            try:
                self._engine.add_request(
                    message.request_id,
                    message.prompt_token_ids,
                    message.sampling,
                    cache_salt=message.cache_salt,
                )
            except ValueError as exc:
                self._channel.send(RequestFailed(message.request_id, str(exc)))
            except Exception as exc:
                log.exception("add_request failed for %s", message.request_id)
                self._channel.send(
                    RequestFailed(
                        message.request_id, f"internal error: {type(exc).__name__}: {exc}"
                    )
                )
        elif isinstance(message, AbortRequests):
            self._engine.abort_requests(list(message.request_ids))
        else:
            log.warning("ignoring unknown engine message %r", type(message).__name__)


def _read_socket(channel: BlockingChannel, inbox: queue.Queue[object]) -> None:
    """Reader thread: socket -> inbox. EOF means the front end is gone: ask the loop to stop."""
    while True:
        message = channel.recv()
        if message is None:
            inbox.put(Shutdown())
            return
        inbox.put(message)


def _configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("SLIPSTREAM_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s [engine pid=%(process)d] %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_engine_process(config: EngineConfig, socket_path: str) -> None:
    """Process entry point (must stay importable at module level for "spawn")."""
    _configure_logging()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(socket_path)
    channel = BlockingChannel(sock)
    exit_code = 0
    try:
        exit_code = _serve(config, channel)
    except (BrokenPipeError, ConnectionError):
        log.info("front end disconnected; engine process exiting")
    finally:
        channel.close()
    sys.exit(exit_code)


def _serve(config: EngineConfig, channel: BlockingChannel) -> int:
    from slipstream.engine.engine import LLMEngine  # heavy (torch): only in this process

    try:
        engine = LLMEngine(config)
    except ValueError as exc:  # the loader's user-facing errors (bad name, unsupported model)
        log.error("could not load model %r: %s", config.model, exc)
        channel.send(EngineStartupFailed(str(exc)))
        return 1
    except Exception as exc:
        log.exception("could not load model %r", config.model)
        channel.send(EngineStartupFailed(f"{type(exc).__name__}: {exc}"))
        return 1
    channel.send(EngineReady(engine.model_info))
    log.info("engine ready: %s", engine.model_info)

    inbox: queue.Queue[object] = queue.Queue()
    reader = threading.Thread(target=_read_socket, args=(channel, inbox), daemon=True)
    reader.start()
    try:
        EngineLoop(engine, channel, inbox).run()
    except (BrokenPipeError, ConnectionError):
        raise
    except Exception as exc:
        log.exception("engine loop crashed")
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        with contextlib.suppress(OSError):
            channel.send(EngineFailed(f"engine crashed: {detail}"))
        return 1
    return 0
