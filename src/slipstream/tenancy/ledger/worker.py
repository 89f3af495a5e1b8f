"""The ledger writer process (`python -m slipstream.tenancy.ledger.worker`; see process.py).

It reads row batches from stdin, writes each one at once with `SpendWriter.flush` (rows stay
queued here while the database fails and go with the next tick) and answers on stdout. At end
of file — the gateway exited, even by kill -9 — it writes what it holds, retrying for up to
`DRAIN_S` while the database is down, and exits. It ignores SIGINT and SIGTERM: the gateway
decides when it stops, so a signal to the whole process group cannot cut the last write.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

from slipstream.store.database import open_engine
from slipstream.store.ledger import SpendStore
from slipstream.store.records import LedgerRow
from slipstream.tenancy.ledger.frames import read_frame, write_frame
from slipstream.tenancy.ledger.writer import SpendWriter

DRAIN_S = 30.0  # after the gateway vanished: how long to retry a failing database
RETRY_S = 0.5

logger = logging.getLogger("slipstream.tenancy.ledger.worker")


def drain(writer: SpendWriter, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not writer.flush(drain=True):
        if time.monotonic() >= deadline:
            return False
        time.sleep(RETRY_S)
    return True


def status(writer: SpendWriter) -> tuple[int, int, int, int, str | None]:
    return (
        writer.written_total,
        writer.failures_total,
        writer.dropped_total,
        writer.pending,
        writer.last_error,
    )


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
    # The gateway reports the database's failures and recoveries: keep the writer's quiet.
    logging.getLogger("slipstream.tenancy.spend").setLevel(logging.CRITICAL)
    src = sys.stdin.buffer
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints must never corrupt the frames
    opened = read_frame(src)
    if opened is None:
        return 0
    _, url, schema, max_queue, batch_max = opened
    engine = open_engine(url, schema=schema)
    writer = SpendWriter(SpendStore(engine).insert, max_queue=max_queue, batch_max=batch_max)
    try:
        while True:
            message = read_frame(src)
            if message is None:  # the gateway is gone: write what is left and stop
                if not drain(writer, DRAIN_S):
                    logger.error(
                        "spend ledger: the gateway exited and the database stayed down; "
                        "%d rows not written",
                        writer.pending,
                    )
                return 0
            if message[0] == "rows":
                for row in map(LedgerRow._make, message[1]):  # plain tuples: see process.py
                    writer.put(row)
                writer.flush()
            else:  # ("close", seconds)
                drain(writer, float(message[1]))
                write_frame(out, status(writer))
                return 0
            write_frame(out, status(writer))
    except BrokenPipeError:
        drain(writer, DRAIN_S)
        return 0
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
