"""Server-sent events framing as OpenAI streams it: `data: <json>\n\n`, ending `data: [DONE]`."""

from __future__ import annotations

from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"
MEDIA_TYPE = "text/event-stream"


def sse_event(payload: Any) -> bytes:
    """One SSE event carrying `payload` (a pydantic model or JSON-able value) as JSON."""
    if hasattr(payload, "model_dump"):
        payload = payload.model_dump(mode="json", exclude_none=False)
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def parse_sse_lines(lines: list[str]) -> list[Any]:
    """Decode the `data:` lines of a stream (for tests and clients); stops at [DONE]."""
    events: list[Any] = []
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        events.append(orjson.loads(data))
    return events
