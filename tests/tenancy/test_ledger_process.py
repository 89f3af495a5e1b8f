"""The ledger's writer process: rows reach the database through it, its death loses nothing,
signals meant for the gateway do not cut its last write, and the gateway uses it by default."""

from __future__ import annotations

import datetime as dt
import io
import os
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from slipstream.store import Store, schema
from slipstream.tenancy.ledger import (
    LedgerProcess,
    LedgerRow,
    LedgerWriter,
    SpendWriter,
    process_supported,
)
from slipstream.tenancy.ledger.frames import read_frame, write_frame
from slipstream.tenancy.runtime import Tenancy

pytestmark = pytest.mark.timeout(120)


def row(n: int, tags: tuple[str, ...] = ()) -> LedgerRow:
    return LedgerRow(
        ts=time.time(), request_id=f"r{n}", status=200, key_id="k", model="m", prompt_tokens=n,
        cached_tokens=1, completion_tokens=2, cost_micro=n, latency_ms=1.5 + n / 1e3 + 1e-4,
        stream=True, usage_source="counted", tags=tags,
    )  # fmt: skip


def wait_for(predicate, seconds: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_frames_round_trip_and_end_of_file_reads_as_none() -> None:
    buf = io.BytesIO()
    write_frame(buf, ("rows", [(1, "a", None)]))
    write_frame(buf, ("close", 2.0))
    buf.seek(0)
    assert read_frame(buf) == ("rows", [(1, "a", None)])
    assert read_frame(buf) == ("close", 2.0)
    assert read_frame(buf) is None


def test_rows_are_written_by_the_process_field_for_field(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    store = Store.open(url)
    writer = LedgerProcess(url, interval_s=0.05)
    writer.start()
    sent = [row(n, ("t1", "t2") if n % 2 else ()) for n in range(50)]
    for r in sent:
        assert writer.put(r)
    assert writer.flush() and writer.pending == 0
    assert writer.metrics.written._value.get() == 50
    assert sorted(store.spend.request_ids(), key=lambda s: int(s[1:])) == [
        r.request_id for r in sent
    ]
    totals = store.spend.report("key")
    assert totals[0]["cost_micro"] == sum(range(50)) and totals[0]["requests"] == 50
    tags = {t["group"]: t["requests"] for t in store.spend.report("tag")}
    assert tags == {"t1": 25, "t2": 25}
    with store.engine.connect() as c:
        got = c.execute(select(schema.spend).where(schema.spend.c.request_id == "r27")).one()
    want = sent[27]
    for name in ("key_id", "model", "prompt_tokens", "cached_tokens", "completion_tokens",
                 "cost_micro", "status", "stream", "usage_source"):  # fmt: skip
        assert getattr(got, name) == getattr(want, name), name
    assert got.latency_ms == round(want.latency_ms, 3) == 1.527  # to the microsecond
    assert abs(got.ts.replace(tzinfo=dt.UTC).timestamp() - want.ts) < 1e-6  # SQLite: naive UTC
    assert list(got.tags) == list(want.tags)
    writer.close()
    store.close()


def test_a_killed_writer_process_is_restarted_and_nothing_is_lost(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    store = Store.open(url)
    writer = LedgerProcess(url, interval_s=0.05)
    writer.start()
    for n in range(100):
        writer.put(row(n))
    assert writer.flush()
    first = writer._child
    assert first is not None
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    for n in range(100, 200):
        writer.put(row(n))
    assert wait_for(lambda: writer.pending == 0 and writer._child is not first)
    ids = store.spend.request_ids()
    assert set(ids) == {f"r{n}" for n in range(200)}
    assert len(ids) - len(set(ids)) <= 100  # a batch written just before the kill may repeat
    writer.close()
    store.close()


def test_the_process_ignores_the_signals_meant_for_the_gateway(tmp_path: Path) -> None:
    """Ctrl+C or a SIGTERM to the whole group reaches the gateway, which drains; the writer
    must still be there to write what it is handed at close."""
    url = f"sqlite:///{tmp_path / 'l.db'}"
    store = Store.open(url)
    writer = LedgerProcess(url, interval_s=30)  # nothing is handed over until close
    writer.start()
    child = writer._child
    assert child is not None
    assert os.getpgid(child.pid) != os.getpgid(0)  # its own session: no terminal Ctrl+C
    for n in range(10):
        writer.put(row(n))
    time.sleep(1.0)  # the worker has started up and installed its handlers
    os.kill(child.pid, signal.SIGINT)
    os.kill(child.pid, signal.SIGTERM)
    time.sleep(0.3)
    assert child.poll() is None
    writer.close()
    assert child.poll() == 0
    assert len(store.spend.request_ids()) == 10
    store.close()


def test_a_gateway_killed_with_9_leaves_no_writer_process_behind(tmp_path: Path) -> None:
    """The child sees end of file, writes what it was handed and exits by itself."""
    url = f"sqlite:///{tmp_path / 'l.db'}"
    store = Store.open(url)
    writer = LedgerProcess(url, interval_s=0.05)  # not started: this test does the ticks
    for n in range(20):
        writer.put(row(n))
    assert writer.flush()
    child = writer._child
    assert child is not None and child.stdin is not None
    for n in range(20, 30):
        writer.put(row(n))  # queued in the gateway, never handed over: lost with it
    child.stdin.close()  # what the kernel does to a killed gateway's end of the pipe
    assert child.wait(15) == 0
    assert len(store.spend.request_ids()) == 20
    store.close()


def test_the_gateway_writes_its_ledger_through_a_process_unless_told_otherwise(
    tmp_path: Path,
) -> None:
    from slipstream.config.schema import TenancyConfig

    store = Store.open(f"sqlite:///{tmp_path / 'l.db'}")
    assert isinstance(Tenancy(store).writer, LedgerProcess)
    thread = Tenancy(store, config=TenancyConfig(spend_writer="thread")).writer
    assert isinstance(thread, SpendWriter)
    assert isinstance(thread, LedgerWriter) and isinstance(Tenancy(store).writer, LedgerWriter)
    memory = Store.open("sqlite://")
    assert isinstance(Tenancy(memory).writer, SpendWriter)  # a child cannot open it
    assert process_supported("postgresql://u@h/db") and process_supported("sqlite:///x.db")
    assert not process_supported("sqlite:///:memory:") and not process_supported(None)
    store.close()
    memory.close()
