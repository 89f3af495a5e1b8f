"""A process that writes ledger rows under load until it is killed (for the kill -9 test).

Usage: python ledger_child.py URL SCHEMA INTERVAL_S [thread|process]. Prints each request id
once it is queued; "process" (the gateway's default) hands rows to a writer process.
"""

from __future__ import annotations

import sys
import time

from slipstream.store import Store
from slipstream.tenancy.ledger import LedgerProcess, LedgerRow, SpendWriter


def main() -> None:
    url, schema, interval = sys.argv[1], sys.argv[2] or None, float(sys.argv[3])
    kind = sys.argv[4] if len(sys.argv) > 4 else "thread"
    store = Store.open(url, schema=schema)
    writer: SpendWriter | LedgerProcess
    if kind == "process":
        writer = LedgerProcess(url, schema, interval_s=interval)
    else:
        writer = SpendWriter(store.spend.insert, interval_s=interval)
    writer.start()
    i = 0
    while True:
        rid = f"r{i}"
        writer.put(LedgerRow(ts=time.time(), request_id=rid, status=200, cost_micro=1, key_id="k"))
        sys.stdout.write(rid + "\n")
        sys.stdout.flush()
        i += 1
        time.sleep(0.002)


if __name__ == "__main__":
    main()
