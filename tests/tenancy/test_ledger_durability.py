"""The ledger's loss bounds: kill -9 loses at most one flush interval of rows; a database
outage of 10 s loses none (a real outage: the database refuses connections)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from tests.store.conftest import PG_URL, pg_schema

from slipstream.store import Store
from slipstream.tenancy.ledger import LedgerProcess, LedgerRow, SpendWriter

CHILD = Path(__file__).with_name("ledger_child.py")
INTERVAL_S = 0.2
SLACK_S = 0.5  # one flush in flight + scheduling on a busy 2-core machine


def _settled_ids(url: str, schema: str) -> list[str]:
    """The stored request ids once the count stops changing (a writer process left behind by
    a killed gateway writes what it was handed, then exits)."""
    store = Store.open(url, schema=schema or None)
    try:
        last, ids = -1, store.spend.request_ids()
        deadline = time.monotonic() + 15
        while len(ids) != last and time.monotonic() < deadline:
            last = len(ids)
            time.sleep(0.5)
            ids = store.spend.request_ids()
        return ids
    finally:
        store.close()


def _kill_during_load(
    url: str, schema: str, kind: str
) -> tuple[list[tuple[float, str]], set[str], float]:
    """Run the writer child, kill -9 it mid-load; what it queued (when) and what was stored."""
    Store.open(url, schema=schema or None).close()  # migrate before the clock starts
    path = [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")]  # keep the caller's
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    child = subprocess.Popen(
        [sys.executable, str(CHILD), url, schema, str(INTERVAL_S), kind],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    produced: list[tuple[float, str]] = []

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            produced.append((time.monotonic(), line.strip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 20
    while len(produced) < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    child.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    child.wait()
    reader.join(5)
    return produced, set(_settled_ids(url, schema)), killed_at


@pytest.mark.parametrize("kind", ["process", "thread"])
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_loses_at_most_one_flush_interval(backend: str, kind: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        url, schemas = f"sqlite:///{tmp_path / 'ledger.db'}", iter([""])
    else:
        url, schemas = PG_URL, pg_schema()
    for schema in schemas:
        produced, stored, killed_at = _kill_during_load(url, schema, kind)
        lost = [(t, rid) for t, rid in produced if rid not in stored]
        assert len(produced) > 300 and len(stored) > 200
        assert stored <= {rid for _, rid in produced}
        old = [rid for t, rid in lost if t < killed_at - INTERVAL_S - SLACK_S]
        assert old == [], f"{len(old)} rows older than one flush interval were lost"


@pytest.fixture
def outage_db() -> str:
    """A dedicated PostgreSQL database we can take down and bring back."""
    name = f"slip_outage_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name}"))
    yield name
    with admin.connect() as c:
        c.execute(text(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        c.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


def _set_down(name: str, down: bool) -> None:
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"ALTER DATABASE {name} ALLOW_CONNECTIONS {'false' if down else 'true'}"))
        if down:
            c.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
                {"d": name},
            )
    admin.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["process", "thread"])
def test_a_10_second_database_outage_loses_no_rows(
    outage_db: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = PG_URL.rsplit("/", 1)[0] + "/" + outage_db
    store = Store.open(url)
    writer: SpendWriter | LedgerProcess
    if kind == "process":
        writer = LedgerProcess(url, interval_s=INTERVAL_S)
    else:
        writer = SpendWriter(store.spend.insert, interval_s=INTERVAL_S)
    writer.start()
    n = 0

    def load(seconds: float) -> None:
        nonlocal n
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            writer.put(LedgerRow(ts=time.time(), request_id=f"r{n}", status=200, cost_micro=n))
            n += 1
            time.sleep(0.005)

    with caplog.at_level(logging.WARNING, logger="slipstream.tenancy.spend"):
        load(1.0)
        _set_down(outage_db, True)
        load(10.0)
        assert not writer.healthy and writer.pending > 0
        assert writer.metrics.failures._value.get() > 0
        _set_down(outage_db, False)
        load(1.0)
        writer.close()
    assert writer.pending == 0
    ids = store.spend.request_ids()
    assert len(ids) == len(set(ids)) == n
    assert "database write failed" in caplog.text and "database back" in caplog.text
    store.close()
