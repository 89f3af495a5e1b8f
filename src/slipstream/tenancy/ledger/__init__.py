"""The spend ledger's writers: each answered request's `LedgerRow` leaves the request path here.

The gateway holds one `LedgerWriter`: by default a `LedgerProcess`, whose rows a child process
(worker.py) writes, so that the database work never holds this process's GIL; `SpendWriter`
writes them from a thread instead (`tenancy.spend_writer: thread`, and always for SQLite in
memory, which a child cannot open: `process_supported`). `put` never blocks: it appends the
row to a bounded queue, and every `interval_s` (0.5 s by default) the rows queued at that
moment are written, one transaction per batch.

Loss bounds, the same for both writers:

- a gateway killed with -9 loses at most the rows of one flush interval: those not written
  (thread) or not handed to the child (process) yet, plus, for the thread, a batch in flight.
  The child sees end of file, writes what it was handed (retrying for up to 30 s while the
  database is down: `worker.DRAIN_S`) and exits;
- a normal stop (SIGTERM, SIGINT: `close`) loses nothing: the rest is written before exit
  (within `close`'s `timeout_s`, 10 s by default). The child runs in its own session and
  ignores SIGINT/SIGTERM, so a signal to the whole group cannot cut its last write;
- while the database is down, rows stay queued (up to `max_queue`: the config's
  `spend_queue_max`, 100,000 by default; beyond that new rows are dropped and counted) and
  are written when it returns; the outage is logged at its start and end;
- a writer process that dies is restarted and the batch it was handed goes back to the
  queue: none is lost, but a batch written just before the crash can be written twice.
"""

from slipstream.store.records import LedgerRow
from slipstream.tenancy.ledger.base import LedgerWriter, SpendWriterMetrics
from slipstream.tenancy.ledger.process import LedgerProcess, process_supported
from slipstream.tenancy.ledger.writer import SpendWriter

__all__ = [
    "LedgerProcess",
    "LedgerRow",
    "LedgerWriter",
    "SpendWriter",
    "SpendWriterMetrics",
    "process_supported",
]
