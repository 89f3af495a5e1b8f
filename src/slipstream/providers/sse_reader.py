"""Split an upstream server-sent-events byte stream into (event name, data) pairs.

Works on bytes, never decoding text it does not need: the OpenAI-compatible path forwards the
`data:` payload untouched. Handles `\\r\\n` framing (Gemini), multi-line data, comments
(`: keep-alive`) and events split across network reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator


def parse_event(block: bytes) -> tuple[bytes | None, bytes | None]:
    """One event block (no blank line inside) → (event name, data); data None for comments."""
    if block.startswith(b"data:") and b"\n" not in block:  # the common one-line case
        return None, block[6:] if block[5:6] == b" " else block[5:]
    event: bytes | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[6:] if line[5:6] == b" " else line[5:])
        elif line.startswith(b"event:"):
            event = line[6:].strip()
    return event, (b"\n".join(data) if data else None)


async def iter_sse(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[bytes | None, bytes]]:
    """Yield (event name or None, data payload) for each complete event that carries data."""
    buffer = b""
    async for piece in chunks:
        buffer += piece
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        while True:
            end = buffer.find(b"\n\n")
            if end < 0:
                break
            block, buffer = buffer[:end], buffer[end + 2 :]
            event, data = parse_event(block)
            if data is not None:
                yield event, data
    if buffer.strip():
        event, data = parse_event(buffer.strip(b"\n"))
        if data is not None:
            yield event, data
