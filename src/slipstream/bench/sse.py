"""Turns a finished Exchange (stamped raw bytes) into a RequestRecord — after the run.

Each SSE event takes the timestamp of the read that completed it. Tokens per chunk come from,
in order of trust: per-chunk cumulative server usage (vLLM ``continuous_usage_stats``); the
final server usage spread over chunks by text length; the client tokenizer; one per chunk.
"""

from __future__ import annotations

from typing import Any

import orjson

from slipstream.bench.corpus import TokenCounter
from slipstream.bench.record import Event, Exchange, RequestRecord


def _text_of(choice: dict[str, Any]) -> str:
    delta = choice.get("delta")
    if isinstance(delta, dict):
        parts = (delta.get("content"), delta.get("reasoning_content"), delta.get("reasoning"))
        return "".join(p for p in parts if isinstance(p, str))
    text = choice.get("text")
    return text if isinstance(text, str) else ""


def split_events(pieces: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    """SSE ``data:`` payloads with the time of the read that completed each event."""
    out: list[tuple[float, bytes]] = []
    buf = b""
    for t, chunk in pieces:
        buf += chunk.replace(b"\r\n", b"\n") if b"\r" in chunk else chunk
        while (end := buf.find(b"\n\n")) >= 0:
            block, buf = buf[:end], buf[end + 2 :]
            data = [line[5:].lstrip() for line in block.split(b"\n") if line.startswith(b"data:")]
            if data:
                out.append((t, b"\n".join(data)))
    if buf.strip():
        last_t = pieces[-1][0]
        data = [line[5:].lstrip() for line in buf.split(b"\n") if line.startswith(b"data:")]
        if data:
            out.append((last_t, b"\n".join(data)))
    return out


def response_text(pieces: list[tuple[float, bytes]]) -> str:
    """The output text of a finished stream (multi-turn sessions feed it to the next turn)."""
    parts: list[str] = []
    for _, payload in split_events(pieces):
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        if isinstance(data, dict):
            for c in data.get("choices") or []:
                if isinstance(c, dict):
                    parts.append(_text_of(c))
    return "".join(parts)


def _distribute(total: int, weights: list[int], floor: int = 0) -> list[int]:
    """Integers proportional to ``weights``, each >= ``floor``, summing to ``total``."""
    wsum = sum(weights)
    if wsum == 0:
        weights, wsum = [1] * len(weights), len(weights)
    raw = [total * w / wsum for w in weights]
    base = [max(floor, int(x)) for x in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: raw[i] - base[i], reverse=True)
    i = 0
    while sum(base) < total:
        base[by_remainder[i % len(base)]] += 1
        i += 1
    for j in reversed(by_remainder):  # over-assigned because of the floor: take back
        while sum(base) > total and base[j] > max(floor, 0):
            base[j] -= 1
    return base


def parse_exchange(ex: Exchange, t0: float, counter: TokenCounter | None = None) -> RequestRecord:
    events: list[Event] = []
    usage: dict[str, Any] | None = None
    cumulative: list[int | None] = []
    error_class, error = ex.error_class, ex.error
    if ex.status and ex.status != 200 and error_class is None:
        body = b"".join(p for _, p in ex.pieces).decode("utf-8", "replace")[:500]
        error_class, error = f"http_{ex.status // 100}xx", f"HTTP {ex.status}: {body}"
    elif error_class is None:
        for t, payload in split_events(ex.pieces):
            rel = t - t0
            if payload.strip() == b"[DONE]":
                events.append(Event(rel, "done"))
                continue
            try:
                data = orjson.loads(payload)
            except orjson.JSONDecodeError:
                error_class = "malformed_sse"
                error = f"event is not JSON: {payload[:200].decode('utf-8', 'replace')!r}"
                break
            if not isinstance(data, dict):
                error_class, error = "malformed_sse", f"event is not an object: {payload[:200]!r}"
                break
            if "error" in data and not data.get("choices"):
                error_class, error = "stream_error", str(data["error"])[:500]
                break
            chunk_usage = data.get("usage")
            choices = data.get("choices") or []
            text = "".join(_text_of(c) for c in choices if isinstance(c, dict))
            if text:
                events.append(Event(rel, "content", 0, text))
                cum = (
                    chunk_usage.get("completion_tokens") if isinstance(chunk_usage, dict) else None
                )
                cumulative.append(cum if isinstance(cum, int) else None)
            elif choices:
                events.append(Event(rel, "empty"))
            elif chunk_usage:
                events.append(Event(rel, "usage"))
            if isinstance(chunk_usage, dict):
                usage = chunk_usage
        if (
            error_class is None
            and ex.status == 200
            and not any(e.kind == "content" for e in events)
        ):
            error_class, error = "empty", "stream ended without any output text"
    token_source = _assign_tokens(events, cumulative, usage, counter)
    full_text = "".join(e.text for e in events if e.kind == "content")
    client_tokens = counter.count(full_text) if counter is not None and full_text else None
    return RequestRecord(
        index=ex.index,
        worker=ex.worker,
        scheduled=ex.scheduled - t0,
        sent=ex.sent - t0,
        headers_at=ex.headers_at - t0 if ex.headers_at else None,
        done_at=ex.done_at - t0 if ex.done_at else None,
        status=ex.status,
        error_class=error_class,
        error=error,
        input_tokens=ex.input_tokens,
        max_tokens=ex.max_tokens,
        prefix_id=ex.prefix_id,
        usage=usage,
        token_source=token_source,
        client_output_tokens=client_tokens,
        events=events,
    )


def _assign_tokens(
    events: list[Event],
    cumulative: list[int | None],
    usage: dict[str, Any] | None,
    counter: TokenCounter | None,
) -> str:
    content = [e for e in events if e.kind == "content"]
    if not content:
        return "none"
    if all(c is not None for c in cumulative):
        prev = 0
        for e, c in zip(content, cumulative, strict=True):
            e.tokens, prev = max(0, c - prev), c  # type: ignore[operator]
        return "usage_per_chunk"
    total = usage.get("completion_tokens") if usage else None
    if isinstance(total, int) and total > 0:
        # by text length, and every chunk with text carries at least one token
        floor = 1 if total >= len(content) else 0
        for e, n in zip(
            content, _distribute(total, [len(e.text) for e in content], floor), strict=True
        ):
            e.tokens = n
        return "usage"
    if counter is not None:
        for e in content:
            e.tokens = max(1, counter.count(e.text))
        return "tokenizer"
    for e in content:
        e.tokens = 1
    return "chunks"
