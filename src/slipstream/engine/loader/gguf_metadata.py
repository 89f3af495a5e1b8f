"""A fast reader for the key/value header of a GGUF file (no tensors).

`gguf.GGUFReader` builds a numpy view per array element, which takes seconds for a 50k-token
vocabulary. The tokenizer only needs the header, so we parse it directly: one pass over bytes.
Layout (GGUF v2/v3, little-endian): magic, version u32, tensor_count u64, kv_count u64, then
kv_count × (key: string, type: u32, value); strings are u64 length + UTF-8 bytes.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from slipstream.engine.loader.errors import UnsupportedModelError

_SCALARS: dict[int, str] = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


class _Cursor:
    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def take(self, n: int) -> bytes:
        data = self._f.read(n)
        if len(data) != n:
            raise UnsupportedModelError("GGUF header is truncated.")
        return data

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.take(self.scalar("<Q")).decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind, count = self.scalar("<I"), self.scalar("<Q")
            if item_kind in _SCALARS:  # numbers: one read, one numpy conversion
                dtype = np.dtype(_SCALARS[item_kind])
                return np.frombuffer(self.take(dtype.itemsize * count), dtype=dtype).tolist()
            return [self.value(item_kind) for _ in range(count)]
        raise UnsupportedModelError(f"Unknown GGUF metadata value type {kind}.")


def read_gguf_metadata(path: str | Path) -> dict[str, Any]:
    """All metadata key/values of a GGUF file as plain Python values."""
    path = Path(path)
    with path.open("rb") as f:
        cursor = _Cursor(f)
        if cursor.take(4) != b"GGUF":
            raise UnsupportedModelError(f"{path} is not a GGUF file (bad magic).")
        version = cursor.scalar("<I")
        if version not in (2, 3):
            raise UnsupportedModelError(f"{path}: unsupported GGUF version {version}.")
        cursor.scalar("<Q")  # tensor count
        kv_count = cursor.scalar("<Q")
        metadata: dict[str, Any] = {}
        for _ in range(kv_count):
            key = cursor.string()
            metadata[key] = cursor.value(cursor.scalar("<I"))
    return metadata
