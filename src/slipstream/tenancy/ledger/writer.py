"""Ledger rows leave the request path here: a bounded queue drained by one writer thread.

Every `interval_s` (0.5 s by default) the thread writes what is queued at that moment, one
transaction per `batch_max` rows (rows queued meanwhile go with the next flush). A process
killed with -9 therefore loses at most the rows of one flush interval (plus a batch in
flight). While the database is down, rows stay queued (up to `max_queue`;
beyond that the newest are dropped and counted) and are written when it returns; the outage
is logged once when it starts and once when it ends.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry

from slipstream.store.records import LedgerRow
from slipstream.tenancy.ledger.base import SpendWriterMetrics

logger = logging.getLogger("slipstream.tenancy.spend")


class SpendWriter:
    """A `LedgerWriter` that writes from a thread of this process."""

    def __init__(
        self,
        insert: Callable[[Sequence[LedgerRow]], None],
        *,
        interval_s: float = 0.5,
        max_queue: int = 100_000,
        batch_max: int = 5_000,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._insert = insert
        self.interval_s = interval_s
        self.max_queue = max_queue
        self.batch_max = batch_max
        self.metrics = SpendWriterMetrics(registry)
        self._queue: deque[LedgerRow] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._failing = False
        self._writing = 0  # rows of the batch being written
        # Plain totals beside the metrics, for the writer process to report (process.py).
        self.written_total = 0
        self.failures_total = 0
        self.dropped_total = 0
        self.last_error: str | None = None  # the exception's type name while writes fail
        self._thread = threading.Thread(target=self._run, name="spend-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, row: LedgerRow) -> bool:
        """Queue a row (never blocks); False if the queue is full and the row was dropped."""
        with self._lock:
            if len(self._queue) >= self.max_queue:
                self.metrics.dropped.inc()
                self.dropped_total += 1
                return False
            self._queue.append(row)
        return True

    @property
    def pending(self) -> int:
        """Rows not written yet: queued, or in the batch being written."""
        return len(self._queue) + self._writing

    @property
    def healthy(self) -> bool:
        return not self._failing

    def flush(self, drain: bool = False) -> bool:
        """Write the rows queued now, in batches; True if they were all written.

        Rows queued while this runs wait for the next flush: under steady load a writer that
        drained until empty would never sleep and would write a trickle of tiny batches, each
        paying a transaction's round trips (and GIL hand-offs with the event loop) — measured
        at ~10 rows per insert and 200 µs of writer CPU per row. `drain` (at shutdown, when
        nothing is queued any more) also writes those.
        """
        left = len(self._queue)
        while drain or left > 0:
            with self._lock:
                n = min(len(self._queue), self.batch_max if drain else min(left, self.batch_max))
                batch = [self._queue.popleft() for _ in range(n)]
                self._writing = n
            if not batch:
                break
            left -= n
            try:
                self._insert(batch)
            except Exception as e:
                with self._lock:
                    self._queue.extendleft(reversed(batch))  # keep order; retry next interval
                    self._writing = 0
                self.metrics.failures.inc()
                self.failures_total += 1
                self.last_error = type(e).__name__
                self.metrics.queued.set(len(self._queue))
                if not self._failing:
                    self._failing = True
                    logger.error(
                        "spend ledger: database write failed (%s); %d rows queued, retrying",
                        type(e).__name__,
                        len(self._queue),
                    )
                return False
            self._writing = 0
            self.metrics.written.inc(len(batch))
            self.written_total += len(batch)
            self.last_error = None
            if self._failing:
                self._failing = False
                logger.warning("spend ledger: database back; writing %d queued rows", self.pending)
        self.metrics.queued.set(len(self._queue))
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the thread after a last flush (best effort within `timeout_s`)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        else:
            self.flush(drain=True)
        if self.pending:
            logger.error("spend ledger: %d rows not written at shutdown", self.pending)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()
        self.flush(drain=True)
