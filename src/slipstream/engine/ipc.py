"""The socket protocol between the front end and the engine process.

One message is a 4-byte big-endian length followed by a pickled dataclass from this module.
Pickle is fine here: the channel is a Unix domain socket between two processes we started
ourselves, never a network port. The engine side is synchronous (blocking socket, a reader
thread); the front end side is asyncio (`read_message` / `encode_frame`).
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import socket
import struct
import threading
from dataclasses import dataclass, field

from slipstream.engine.types import EngineStats, ModelInfo, RequestOutput, SamplingParams

_HEADER = struct.Struct("!I")
MAX_MESSAGE_BYTES = 1 << 30


# --- front end -> engine -------------------------------------------------------------


@dataclass(frozen=True)
class AddRequest:
    request_id: str
    prompt_token_ids: list[int]
    sampling: SamplingParams
    cache_salt: str | None = None


@dataclass(frozen=True)
class AbortRequests:
    request_ids: list[str]


@dataclass(frozen=True)
class Shutdown:
    pass


# --- engine -> front end -------------------------------------------------------------


@dataclass(frozen=True)
class EngineReady:
    """Sent once, after the model loaded."""

    model_info: ModelInfo


@dataclass(frozen=True)
class EngineStartupFailed:
    """The model could not be loaded; `message` is meant for the user."""

    message: str


@dataclass(frozen=True)
class StepResult:
    """Everything one engine step produced: per-request deltas plus stats, in one message."""

    outputs: list[RequestOutput] = field(default_factory=list)
    stats: EngineStats = field(default_factory=EngineStats)


@dataclass(frozen=True)
class RequestFailed:
    """`add_request` rejected the request (bad input); the engine keeps running."""

    request_id: str
    message: str


@dataclass(frozen=True)
class EngineFailed:
    """The engine loop crashed; the process exits right after sending this."""

    message: str


def encode_frame(message: object) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


def _decode_length(header: bytes) -> int:
    (length,) = _HEADER.unpack(header)
    if length > MAX_MESSAGE_BYTES:
        raise ValueError(f"engine message of {length} bytes exceeds the {MAX_MESSAGE_BYTES} limit")
    return length


async def read_message(reader: asyncio.StreamReader) -> object | None:
    """Read one message; None when the peer closed the connection."""
    try:
        header = await reader.readexactly(_HEADER.size)
        payload = await reader.readexactly(_decode_length(header))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return pickle.loads(payload)


class BlockingChannel:
    """The engine process's end of the socket: blocking send/recv of whole messages."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._send_lock = threading.Lock()

    def send(self, message: object) -> None:
        frame = encode_frame(message)
        with self._send_lock:
            self._sock.sendall(frame)

    def recv(self) -> object | None:
        """Block for one message; None when the front end closed the connection."""
        header = self._recv_exactly(_HEADER.size)
        if header is None:
            return None
        payload = self._recv_exactly(_decode_length(header))
        return None if payload is None else pickle.loads(payload)

    def _recv_exactly(self, n: int) -> bytes | None:
        chunks: list[bytes] = []
        remaining = n
        while remaining:
            try:
                chunk = self._sock.recv(min(remaining, 1 << 20))
            except OSError:
                return None
            if not chunk:
                return None
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
