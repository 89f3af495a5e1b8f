"""What both ledger writers are to the gateway (`LedgerWriter`), and the metrics they share."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, Counter, Gauge

from slipstream.store.records import LedgerRow

PREFIX = "slipstream:spend_"


class SpendWriterMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.queued = Gauge(PREFIX + "queue_rows", "Ledger rows waiting to be written.", registry=r)
        self.written = Counter(PREFIX + "rows_written", "Ledger rows written.", registry=r)
        self.dropped = Counter(PREFIX + "rows_dropped", "Rows dropped: queue full.", registry=r)
        self.failures = Counter(PREFIX + "flush_failures", "Failed ledger flushes.", registry=r)


@runtime_checkable
class LedgerWriter(Protocol):
    """A ledger writer: `SpendWriter` (a thread of this process) or `LedgerProcess` (a child
    process). `put` never blocks; `start` and `close` run at the gateway's start and stop."""

    interval_s: float
    metrics: SpendWriterMetrics

    def start(self) -> None: ...

    def put(self, row: LedgerRow) -> bool:
        """Queue a row; False if the queue is full and the row was dropped."""
        ...

    def flush(self) -> bool:
        """Write what is queued now; True if it is all written."""
        ...

    def close(self, timeout_s: float = 10.0) -> None:
        """Write the rest (within `timeout_s`) and stop."""
        ...

    @property
    def pending(self) -> int:
        """Rows not written yet."""
        ...

    @property
    def healthy(self) -> bool:
        """False while database writes fail."""
        ...
