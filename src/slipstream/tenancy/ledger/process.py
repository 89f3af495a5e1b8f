"""The spend ledger's writer in a child process: the gateway only queues rows.

Why a process and not a thread: the database work of a flush (SQLAlchemy, the driver, row
conversion) is Python, so a writer thread holds the GIL in many short slices, and every time
the event loop gives the GIL up (each socket read or write) it waits to get it back. Measured
in-process on 2 cores: tenancy cost 92 µs per request while a writer thread flushed, 46 µs
with it idle. Here `put` only appends the row (a `LedgerRow`: a tuple) to a list, and a
thread of the gateway wakes once per `interval_s`, pickles the batch as plain tuples (C calls
only: one GIL hand-off, where a Python loop in the thread was measured at ~10 µs per row of
hand-offs) and hands it to the child through a pipe, then waits for its answer with the GIL
released.

The frames on that pipe are described in frames.py.

Loss bounds are the thread writer's: a gateway killed with -9 loses the rows it had not
handed over yet (at most one interval); the child reads what is in the pipe, writes it and
exits. The child runs in its own session, so a Ctrl+C at the terminal reaches only the
gateway, which then hands over the rest and tells the child to close. If the child dies,
the batch it was given goes back to the queue and a new child is started at the next tick (a
batch written just before a crash can then be written twice; the ledger never loses it).
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import threading
import time

from prometheus_client import CollectorRegistry

from slipstream.store.records import LedgerRow
from slipstream.tenancy.ledger.base import SpendWriterMetrics
from slipstream.tenancy.ledger.frames import read_frame, write_frame

logger = logging.getLogger("slipstream.tenancy.spend")
WORKER = "slipstream.tenancy.ledger.worker"
REPLY_TIMEOUT_S = 120.0  # a tick's answer: the child's write, incl. the driver's connect timeout


class LedgerProcess:
    """A `LedgerWriter` whose rows are written by a child process (worker.py)."""

    def __init__(
        self,
        url: str,
        schema: str | None = None,
        *,
        interval_s: float = 0.5,
        max_queue: int = 100_000,
        batch_max: int = 5_000,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._open = ("open", url, schema, max_queue, batch_max)
        self.interval_s = interval_s
        self.max_queue = max_queue
        self.metrics = SpendWriterMetrics(registry)
        self._rows: list[LedgerRow] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None
        self._sending = 0  # rows handed to the child and not answered for yet
        self._held = 0  # rows the child holds (its database writes failing)
        self._seen = (0, 0, 0)  # the child's written / failures / dropped totals
        self._failing = False
        self._child_lost = False
        self._thread = threading.Thread(target=self._run, name="spend-ledger", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def put(self, row: LedgerRow) -> bool:
        """Queue a row (never blocks); False if the queue is full and the row was dropped."""
        with self._lock:
            if len(self._rows) >= self.max_queue:
                self.metrics.dropped.inc()
                return False
            self._rows.append(row)
        return True

    @property
    def pending(self) -> int:
        """Rows not written yet: queued here, being handed over, or held by the child."""
        return len(self._rows) + self._sending + self._held

    @property
    def healthy(self) -> bool:
        return not self._failing

    def flush(self) -> bool:
        """Hand over what is queued now and wait for the child's write; True if it is written."""
        return self._tick() and self._held == 0

    def close(self, timeout_s: float = 10.0) -> None:
        """Hand over the rest, let the child write it (within `timeout_s`) and stop it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        deadline = time.monotonic() + timeout_s
        self._tick()
        child = self._child
        if child is not None and child.stdin is not None and child.stdout is not None:
            left = max(0.1, deadline - time.monotonic())
            try:
                write_frame(child.stdin, ("close", left))
                reply = read_frame(child.stdout, left + 1.0)
            except (OSError, ValueError):
                reply = None
            if reply is not None:
                self._apply(reply)
            self._reap(child, max(0.1, deadline - time.monotonic()))
        if self.pending:
            logger.error("spend ledger: %d rows not written at shutdown", self.pending)

    # -- internals -------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._tick()

    def _spawn(self) -> bool:
        try:
            child = subprocess.Popen(
                [sys.executable, "-m", WORKER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
                start_new_session=True,  # a terminal's Ctrl+C is for the gateway, which drains
            )
            assert child.stdin is not None
            write_frame(child.stdin, self._open)
        except OSError as e:
            logger.error("spend ledger: cannot start the writer process (%s)", e)
            return False
        self._child = child
        self._seen = (0, 0, 0)
        self._held = 0
        return True

    def _tick(self) -> bool:
        """One exchange: hand over the queued rows, wait for the child's answer."""
        if self._child is None and not self._spawn():
            return False
        child = self._child
        assert child is not None and child.stdin is not None and child.stdout is not None
        with self._lock:
            batch, self._rows = self._rows, []
            self._sending = len(batch)
        try:
            # As plain tuples (a C copy): a NamedTuple pickles through a Python method per row
            # (5x slower, measured), which would run Python, and trade the GIL, in this thread.
            write_frame(child.stdin, ("rows", list(map(tuple, batch))))
            reply = read_frame(child.stdout, REPLY_TIMEOUT_S)
        except (OSError, ValueError):  # ValueError: a pipe already closed
            reply = None
        if reply is None:  # the child died (or hangs): requeue and start another
            with self._lock:
                self._rows[:0] = batch
                self._sending = 0
            self._lost(child)
            return False
        self._sending = 0
        if self._child_lost:
            self._child_lost = False
            logger.warning("spend ledger: writer process restarted")
        self._apply(reply)
        return True

    def _apply(self, reply: tuple[int, int, int, int, str | None]) -> None:
        written, failures, dropped, held, error = reply
        w0, f0, d0 = self._seen
        self.metrics.written.inc(written - w0)
        self.metrics.failures.inc(failures - f0)
        self.metrics.dropped.inc(dropped - d0)
        self._seen = (written, failures, dropped)
        self._held = held
        self.metrics.queued.set(self.pending)
        if error is not None and not self._failing:
            self._failing = True
            logger.error(
                "spend ledger: database write failed (%s); %d rows queued, retrying",
                error,
                self.pending,
            )
        elif error is None and self._failing:
            self._failing = False
            logger.warning("spend ledger: database back; wrote the queued rows")

    def _lost(self, child: subprocess.Popen[bytes]) -> None:
        if not self._child_lost:
            self._child_lost = True
            logger.error(
                "spend ledger: writer process stopped answering (exit code %s); %d rows "
                "queued, restarting it",
                child.poll(),
                self.pending,
            )
        self._reap(child, 1.0)
        self._child = None

    @staticmethod
    def _reap(child: subprocess.Popen[bytes], timeout_s: float) -> None:
        for pipe in (child.stdin, child.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        try:
            child.wait(timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def process_supported(url: str | None) -> bool:
    """A child can open the same database: a file or a server, not SQLite in memory."""
    if url is None:
        return False
    return not (url.startswith("sqlite") and (":memory:" in url or url.rstrip("/") == "sqlite:"))


__all__ = ["LedgerProcess", "process_supported"]
