"""The pipe between the gateway and its ledger writer process: length-prefixed pickles.

Each frame is a pickle preceded by its length (4 bytes, big-endian). Parent → child:
``("open", url, schema, max_queue, batch_max)`` once, ``("rows", [tuple, ...])`` every interval
(each a `LedgerRow`'s fields as a plain tuple; also sent when empty: a retry tick while the
database is down), ``("close", seconds)`` at shutdown.
The child answers every "rows" and "close" frame with ``(written, failures, dropped, queued,
error)``: totals so far, rows it holds, and the exception's name while writes fail.
"""

from __future__ import annotations

import pickle
import select
import struct
from typing import IO, Any

HEADER = struct.Struct(">I")


def write_frame(out: IO[bytes], message: object) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(HEADER.pack(len(data)) + data)
    while view:  # an unbuffered pipe may take part of it
        n = out.write(view)
        view = view[n or 0 :]
    out.flush()


def _read_exact(src: IO[bytes], n: int) -> bytes | None:
    parts: list[bytes] = []
    while n > 0:
        part = src.read(n)
        if not part:
            return None
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def read_frame(src: IO[bytes], timeout_s: float | None = None) -> Any:
    """The next message, or None at end of file (or when `timeout_s` passes first; `src` must
    then be unbuffered, so that select() sees what is unread)."""
    if timeout_s is not None:
        ready, _, _ = select.select([src], [], [], timeout_s)
        if not ready:
            return None
    head = _read_exact(src, HEADER.size)
    if head is None:
        return None
    data = _read_exact(src, HEADER.unpack(head)[0])
    return None if data is None else pickle.loads(data)
