"""Raw per-request records: what the hot path stamps, and the parsed form written as JSONL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson


class Exchange:
    """Hot-path state of one request: perf_counter stamps and raw body bytes, nothing parsed."""

    __slots__ = (
        "done",
        "done_at",
        "error",
        "error_class",
        "headers_at",
        "index",
        "input_tokens",
        "max_tokens",
        "pieces",
        "prefix_id",
        "scheduled",
        "sent",
        "status",
        "worker",
    )

    def __init__(self, index: int, scheduled: float, worker: int = 0) -> None:
        self.index = index
        self.scheduled = scheduled
        self.worker = worker
        self.sent = 0.0
        self.headers_at = 0.0
        self.done_at = 0.0
        self.status = 0
        self.pieces: list[tuple[float, bytes]] = []
        self.error: str | None = None
        self.error_class: str | None = None
        self.done: asyncio.Future[None] | None = None
        self.max_tokens = 0
        self.input_tokens = 0
        self.prefix_id: int | None = None

    def fail(self, error_class: str, message: str) -> None:
        if self.error_class is None:
            self.error_class, self.error = error_class, message


@dataclass
class Event:
    """One SSE event: arrival time (s from run start), kind, tokens it carried, its text.

    ``kind``: ``content`` (output text), ``empty`` (choices without text, e.g. the role delta),
    ``usage`` (usage-only), ``done`` (``[DONE]``).
    """

    t: float
    kind: str
    tokens: int = 0
    text: str = ""


@dataclass
class RequestRecord:
    """Everything measured about one request; times are seconds since the run's start."""

    index: int
    worker: int
    scheduled: float
    sent: float
    headers_at: float | None
    done_at: float | None
    status: int
    error_class: str | None
    error: str | None
    input_tokens: int
    max_tokens: int
    prefix_id: int | None
    usage: dict[str, Any] | None
    token_source: str  # how per-chunk token deltas were obtained
    client_output_tokens: int | None = None  # from the model's tokenizer, when given
    events: list[Event] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error_class is None

    @property
    def content_events(self) -> list[Event]:
        return [e for e in self.events if e.kind == "content"]

    @property
    def output_tokens(self) -> int:
        return sum(e.tokens for e in self.events if e.kind == "content")

    def to_json(self) -> bytes:
        data = asdict(self)
        data["events"] = [[round(e.t, 7), e.kind, e.tokens, e.text] for e in self.events]
        return orjson.dumps(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestRecord:
        data = dict(data)
        data["events"] = [Event(*e) for e in data.get("events", [])]
        return cls(**data)


def write_jsonl(path: str | Path, records: Iterable[RequestRecord]) -> None:
    with open(path, "wb") as f:
        for r in records:
            f.write(r.to_json() + b"\n")


def read_jsonl(path: str | Path) -> Iterator[RequestRecord]:
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                yield RequestRecord.from_dict(orjson.loads(line))
