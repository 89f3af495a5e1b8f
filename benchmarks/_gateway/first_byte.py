"""Streaming time-to-first-event, measured with a raw HTTP/1.1 client on asyncio + uvloop.

wrk cannot time the first chunk of a response, and an HTTP library would add its own parsing
to every sample, so this speaks HTTP/1.1 over one keep-alive socket itself: write the request,
read the headers, then the chunked body, and note when the first SSE `data:` event arrives and
when the stream ends. Requests go one at a time (concurrency 1), so client-side cost is the
same small constant for every target and the difference between targets is the gateway's.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class FirstByteResult:
    """Percentiles in milliseconds over `requests` sequential streamed requests."""

    requests: int
    first_event_p50_ms: float
    first_event_p90_ms: float
    first_event_p99_ms: float
    complete_p50_ms: float  # until the end of the stream (`data: [DONE]` and the last chunk)
    events_per_stream: int
    errors: int
    self_reported_overhead_p50_ms: float | None  # x-slipstream-overhead-ms, when sent

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


class _Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def _one(conn: _Conn, request: bytes) -> tuple[float, float, int, dict[str, str]]:
    """(first-event s, complete s, data events, response headers) of one streamed request."""
    if conn.writer is None:
        await conn.open()
    assert conn.reader is not None and conn.writer is not None
    reader = conn.reader
    t0 = time.perf_counter()
    conn.writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers = {}
    for line in lines:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if status != 200:
        raise RuntimeError(f"HTTP {status}")
    first = 0.0
    body = bytearray()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += data[:-2]
            if not first and b"data:" in body:
                first = time.perf_counter() - t0
    else:  # content-length or read-to-close framing
        length = headers.get("content-length")
        while True:
            data = await (reader.read(65536) if length is None else reader.read(int(length)))
            if not data:
                conn.close()
                break
            body += data
            if not first and b"data:" in body:
                first = time.perf_counter() - t0
            if length is not None and len(body) >= int(length):
                break
    done = time.perf_counter() - t0
    if headers.get("connection", "").lower() == "close":
        conn.close()
    events = body.count(b"data:")
    if not first or b"[DONE]" not in body:
        raise RuntimeError("stream ended without data events or [DONE]")
    return first, done, events, headers


async def _measure(host: str, port: int, request: bytes, n: int, warmup: int) -> FirstByteResult:
    conn = _Conn(host, port)
    firsts: list[float] = []
    totals: list[float] = []
    overheads: list[float] = []
    events = 0
    errors = 0
    try:
        for i in range(warmup + n):
            try:
                first, total, events, headers = await _one(conn, request)
            except (OSError, RuntimeError, ValueError, asyncio.IncompleteReadError):
                errors += i >= warmup
                conn.close()
                continue
            if i < warmup:
                continue
            firsts.append(first * 1000)
            totals.append(total * 1000)
            if "x-slipstream-overhead-ms" in headers:
                overheads.append(float(headers["x-slipstream-overhead-ms"]))
    finally:
        conn.close()
    if not firsts:
        raise RuntimeError(f"all {n} streamed requests failed")
    q = statistics.quantiles(firsts, n=100, method="inclusive")
    return FirstByteResult(
        requests=len(firsts),
        first_event_p50_ms=round(statistics.median(firsts), 4),
        first_event_p90_ms=round(q[89], 4),
        first_event_p99_ms=round(q[98], 4),
        complete_p50_ms=round(statistics.median(totals), 4),
        events_per_stream=events,
        errors=errors,
        self_reported_overhead_p50_ms=round(statistics.median(overheads), 4) if overheads else None,
    )


def measure_first_byte(
    host: str, port: int, path: str, body: bytes, headers: dict[str, str], n: int, warmup: int = 50
) -> FirstByteResult:
    """Stream `n` chat completions one after another and time their first SSE event."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    try:
        import uvloop

        return uvloop.run(_measure(host, port, request, n, warmup))
    except ImportError:
        return asyncio.run(_measure(host, port, request, n, warmup))
