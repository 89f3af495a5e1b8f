"""Per-request timings for whoever watches the client (the server's metrics).

Time to first token, gaps between tokens and end-to-end latency are measured here, on the
front end, when deltas arrive: that is what a user of the API sees, queueing included.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol


class RequestObserver(Protocol):
    """Receives per-request timings (implemented by obs.metrics.ServingMetrics)."""

    def on_first_token(self, ttft_s: float, queue_time_s: float | None) -> None: ...
    def on_next_token(self, itl_s: float) -> None: ...
    def on_finished(
        self, finish_reason: str, e2e_s: float, prompt_tokens: int, completion_tokens: int
    ) -> None: ...


@dataclass
class RequestTiming:
    """When one request arrived and when its latest tokens came."""

    arrival: float = field(default_factory=time.monotonic)
    last_token_time: float | None = None

    def tokens(
        self, observer: RequestObserver | None, queue_time_s: float | None, now: float
    ) -> None:
        """New tokens arrived at `now`: the first token's latency, or the gap since the last."""
        if observer is not None:
            if self.last_token_time is None:
                observer.on_first_token(now - self.arrival, queue_time_s)
            else:
                observer.on_next_token(now - self.last_token_time)
        self.last_token_time = now

    def finished(
        self,
        observer: RequestObserver | None,
        finish_reason: str,
        now: float,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> None:
        if observer is not None:
            observer.on_finished(
                finish_reason, now - self.arrival, prompt_tokens, completion_tokens
            )
