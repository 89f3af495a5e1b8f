"""The stage contract: optional hooks around the one provider call (Bifrost's plugin shape).

A stage is any object with a `name` and a `phase` (where it sits in the chain, chain.py) and
any of these hooks; a hook it does not define costs nothing on the hot path (the chain keeps
only the bound methods that exist):

    async def pre(ctx) -> Refusal | None
        Before the call, in chain order. Answer early by returning or raising a `Refusal`
        (401, 403, 429...): no provider is called, and the stages before this one get their
        `post` with `ctx.status` and `ctx.error` set. Write response headers to
        `ctx.response_headers`; keep per-request state in a typed slot (`StateKey`).

    async def on_chunk(ctx, chunk) -> StreamChunk | tuple[StreamChunk, ...] | None
        Each streamed chunk, in chain order, after usage was read from it. Return the chunk
        (pass), another chunk (change), None (hold it back: the stage keeps it and releases it
        later), or a tuple (release several: what it held plus this one). Raise `EndStream` to
        end the stream cleanly after the chunks it carries, or a `Refusal` to end it with an
        error event the SDKs raise on (the HTTP status was already sent).

    async def flush(ctx) -> tuple[StreamChunk, ...]
        The upstream stream ended: release what `on_chunk` held back (chain order).

    async def post(ctx) -> None
        After the answer, in reverse chain order, also on failure (`ctx.error` set) and after a
        stream's last chunk or the client's cancel (`ctx.status` 499). Only stages whose `pre`
        completed (or that have none) get it.

Every hook's time is recorded in `ctx.stage_s[name]` (pre and post).
"""

from __future__ import annotations

import enum
from typing import Protocol, runtime_checkable

from slipstream.gateway.context import RequestContext
from slipstream.protocol.errors import Refusal
from slipstream.providers.base import StreamChunk

ChunkResult = StreamChunk | tuple[StreamChunk, ...] | None


class Phase(enum.IntEnum):
    """Where a stage sits; the chain is sorted by phase, then by registration order. `pre`
    hooks run in this order, `post` hooks in the reverse one."""

    IDENTIFY = 100  # request id: everything after it can name the request
    OBSERVE = 200  # metrics and the log line: its post runs last, so it sees every outcome
    AUTHENTICATE = 300  # who is asking (virtual keys)
    ROUTE = 400  # which model group answers (unknown models are refused here)
    ADMIT = 500  # may this request run: rate limits, budgets, size caps
    TRANSFORM = 600  # rewrite the request: headers, guardrails, PII masking
    ANSWER = 700  # answer without the upstream: caches
    BILL = 800  # price the answer and write the ledger: its post runs first after the call


class Stage(Protocol):
    """What every stage has; the hooks above are optional."""

    name: str
    phase: Phase


@runtime_checkable
class Feature(Protocol):
    """A feature package's one entry point into the gateway: the stages it contributes.

    The gateway core never imports a feature; whoever composes the server (server/) hands the
    enabled features to the `Gateway`, which places their stages by phase."""

    name: str

    def stages(self) -> list[Stage]: ...


class EndStream(Exception):
    """Raised by `on_chunk`: stop the stream here, after `chunks` (e.g. a final chunk that
    carries the finish reason); the upstream call is closed and the request is a success."""

    def __init__(self, *chunks: StreamChunk) -> None:
        super().__init__("stream ended by a stage")
        self.chunks = chunks


__all__ = ["ChunkResult", "EndStream", "Feature", "Phase", "Refusal", "RequestContext", "Stage"]
