from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from slipstream.store import LedgerRow, Limits, NotFound, Store
from slipstream.store.keygen import hash_key, looks_like_key
from slipstream.store.records import window_start
from slipstream.store.schema import metadata


def test_migration_matches_the_schema_and_is_idempotent(store: Store) -> None:
    from slipstream.store.database import migrate

    migrate(store.engine)  # a second start-up is a no-op
    with store.engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), metadata)
    # SQLite cannot tell BigInteger from Integer on reflection; type drift is not checked here.
    assert [d for d in diff if d[0] not in ("modify_type",)] == []


def test_keys_are_stored_hashed_and_can_be_revoked_and_rotated(store: Store) -> None:
    store.tenants.create_org("acme", budget_micro=100_000_000, budget_window="monthly")
    team = store.tenants.create_team("search", org="acme", limits=Limits(rpm=10))
    key, rec = store.tenants.create_key(
        team="search",
        name="app",
        limits=Limits(models=("chat",), rpm=600, tpm=1000, max_parallel=2, budget_micro=5_000_000,
                      budget_window="daily"),
        tags=("prod",),
        metadata={"owner": "ana"},
    )  # fmt: skip
    assert looks_like_key(key)
    assert rec.key_hash == hash_key(key) and key not in repr(rec)
    assert rec.team_id == team.id and rec.org_id == team.org_id
    assert rec.limits.models == ("chat",) and rec.limits.budget_micro == 5_000_000
    assert rec.metadata == {"owner": "ana"} and rec.tags == ("prod",)
    assert "key_hash" not in rec.public() and rec.public()["budget_usd"] == 5.0

    new, rotated = store.tenants.rotate_key(rec.id)
    assert rotated.id == rec.id and rotated.key_hash == hash_key(new) != rec.key_hash
    assert store.tenants.revoke_key(rec.id).revoked
    assert [k.id for k in store.tenants.list_keys(team="search")] == [rec.id]
    with pytest.raises(NotFound):
        store.tenants.revoke_key("key_nope")
    with pytest.raises(ValueError):
        store.tenants.create_key(limits=Limits(budget_window="hourly"))


def test_expiry_round_trips_as_aware_utc(store: Store) -> None:
    when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    _, rec = store.tenants.create_key(expires_at=when)
    assert store.tenants.key(rec.id).expires_at == when


def _row(i: int, key: str, cost: int, day: dt.datetime, tags: tuple[str, ...] = ()) -> LedgerRow:
    return LedgerRow(
        ts=day.timestamp(), request_id=f"r{i}", status=200, key_id=key, team_id="team_a",
        model="chat", prompt_tokens=10, cached_tokens=2, completion_tokens=5, cost_micro=cost,
        tags=tags,
    )  # fmt: skip


def test_ledger_totals_are_exact_and_grouped(store: Store) -> None:
    d1 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    d2 = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)
    rows = [_row(i, "k1", 333_333, d1, ("a",)) for i in range(3)]
    rows += [_row(10 + i, "k2", 1, d2, ("a", "b")) for i in range(4)]
    store.spend.insert(rows)
    assert store.spend.count() == 7
    by_key = {r["group"]: r for r in store.spend.report("key")}
    assert by_key["k1"]["cost_micro"] == 999_999 and by_key["k1"]["requests"] == 3
    assert by_key["k2"]["prompt_tokens"] == 40 and by_key["k2"]["cached_tokens"] == 8
    assert {r["group"]: r["cost_micro"] for r in store.spend.report("day")} == {
        "2026-03-01": 999_999,
        "2026-03-02": 4,
    }
    assert {r["group"]: r["cost_micro"] for r in store.spend.report("tag")} == {
        "a": 1_000_003,
        "b": 4,
    }
    assert store.spend.report("team")[0]["cost_micro"] == 1_000_003
    assert store.spend.window_totals("key", dt.date(2026, 3, 2)) == {"k2": 4}
    assert store.spend.report("key", since=dt.date(2026, 3, 2))[0]["group"] == "k2"
    with pytest.raises(ValueError):
        store.spend.report("nonsense")


def test_window_start() -> None:
    t = dt.datetime(2026, 11, 26, 23, 59, tzinfo=dt.UTC)  # a Thursday
    assert window_start("daily", t) == dt.date(2026, 11, 26)
    assert window_start("weekly", t) == dt.date(2026, 11, 23)
    assert window_start("monthly", t) == dt.date(2026, 11, 1)


def test_daily_rollup_matches_the_raw_ledger_and_survives_pruning(store: Store) -> None:
    import random

    rng = random.Random(5)
    days = [dt.datetime(2026, 1, d, 8, tzinfo=dt.UTC) for d in (1, 2, 3)]
    rows = [
        LedgerRow(
            ts=rng.choice(days).timestamp(),
            request_id=f"r{i}",
            status=200,
            key_id=rng.choice(["k1", "k2", None]),
            team_id=rng.choice(["t1", None]),
            model=rng.choice(["a", "b"]),
            prompt_tokens=rng.randrange(100),
            completion_tokens=rng.randrange(100),
            cost_micro=rng.randrange(10**6),
        )
        for i in range(300)
    ]
    for start in range(0, 300, 70):  # several batches hit the same rollup rows
        store.spend.insert(rows[start : start + 70])
    for group, attr in (("key", "key_id"), ("team", "team_id"), ("model", "model")):
        expected: dict[object, int] = {}
        for r in rows:
            expected[getattr(r, attr)] = expected.get(getattr(r, attr), 0) + r.cost_micro
        got = {r["group"]: r["cost_micro"] for r in store.spend.report(group)}
        assert got == expected
    assert sum(r["requests"] for r in store.spend.report("day")) == 300
    before = store.spend.report("key")
    third = days[2].timestamp()
    assert store.spend.prune(dt.date(2026, 1, 3)) == sum(1 for r in rows if r.ts < third)
    assert store.spend.count() == sum(1 for r in rows if r.ts == third)
    assert store.spend.report("key") == before  # totals come from the rollup
    k1 = sum(r.cost_micro for r in rows if r.key_id == "k1" and r.ts >= days[1].timestamp())
    assert store.spend.window_totals("key", dt.date(2026, 1, 2))["k1"] == k1


def test_time_series_for_one_key(store: Store) -> None:
    d = [dt.datetime(2026, 5, i, tzinfo=dt.UTC) for i in (1, 1, 2, 4)]
    store.spend.insert([_row(i, "k1", 10 * (i + 1), ts) for i, ts in enumerate(d)])
    store.spend.insert([_row(9, "k2", 1000, d[0])])
    series = store.spend.report("day", where={"key": "k1"})
    assert sorted((r["group"], r["cost_micro"]) for r in series) == [
        ("2026-05-01", 30), ("2026-05-02", 30), ("2026-05-04", 40),
    ]  # fmt: skip
    assert (
        store.spend.report("model", where={"team": "team_a", "model": "chat"})[0]["requests"] == 5
    )
    with pytest.raises(ValueError):
        store.spend.report("tag", where={"key": "k1"})
    with pytest.raises(ValueError):
        store.spend.report("day", where={"deployment": "x"})


def test_ledger_rows_read_back_exactly_as_written(store: Store) -> None:
    """The batch writer (COPY on PostgreSQL, plain executemany on SQLite) stores what the
    SQLAlchemy column types read back: times in UTC, tags, flags, odd characters."""
    from sqlalchemy import select

    from slipstream.store.schema import spend, spend_daily

    ts = dt.datetime(2026, 3, 1, 23, 30, 1, 250, tzinfo=dt.timezone(dt.timedelta(hours=-2)))
    odd = 'tab\there, new\nline, back\\slash, "quotes", ünïcode'
    full = LedgerRow(
        ts=ts.timestamp(), request_id="r-full", status=499, org_id="o", team_id="t", key_id="k",
        end_user=odd, model="chat", deployment="d", provider="openai", prompt_tokens=11,
        cached_tokens=3, completion_tokens=7, cost_micro=2**40, latency_ms=1.25,
        ttft_ms=0.5, stream=True, usage_source="counted", tags=("a", odd),
    )  # fmt: skip
    bare = LedgerRow(
        ts=dt.datetime(2026, 3, 2, tzinfo=dt.UTC).timestamp(), request_id="r-bare", status=200
    )
    store.spend.insert([full, bare])
    with store.engine.connect() as c:
        got = {r.request_id: r for r in c.execute(select(spend))}
        daily = c.execute(select(spend_daily).where(spend_daily.c.key_id == "k")).one()
    f = got["r-full"]
    assert (f.ts if f.ts.tzinfo else f.ts.replace(tzinfo=dt.UTC)) == ts  # SQLite: naive UTC
    assert f.day == dt.date(2026, 3, 2)  # 01:30 UTC
    assert (f.end_user, f.tags, f.stream, f.status, f.cost_micro) == (
        odd,
        ["a", odd],
        True,
        499,
        2**40,
    )
    assert (f.latency_ms, f.ttft_ms, f.usage_source) == (1.25, 0.5, "counted")
    b = got["r-bare"]
    assert (b.tags, b.stream, b.key_id, b.latency_ms, b.day) == (
        None,
        False,
        None,
        None,
        dt.date(2026, 3, 2),
    )
    assert daily.day == dt.date(2026, 3, 2) and daily.requests == 1 and daily.cost_micro == 2**40
    assert {r["group"]: r["requests"] for r in store.spend.report("tag")} == {"a": 1, odd: 1}


def test_a_batch_with_many_rollup_groups_is_written_whole(store: Store) -> None:
    day = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
    rows = [_row(i, f"k{i}", i, day) for i in range(7000)]  # more groups than one statement binds
    store.spend.insert(rows)
    store.spend.insert(rows[:10])
    totals = store.spend.window_totals("key", dt.date(2026, 4, 1))
    assert len(totals) == 7000 and totals["k5"] == 10 and totals["k6999"] == 6999


def test_sqlite_batches_larger_than_one_statement_are_written_whole(tmp_path: Path) -> None:
    """SQLite rows go in as multi-row INSERTs of as many rows as its parameter limit allows:
    with a small limit a batch spans many statements, and every row, tag and total lands."""
    import sqlite3

    from slipstream.store.rollup import write_batch

    store = Store.open(f"sqlite:///{tmp_path / 'chunks.db'}")
    day = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    rows = [_row(i, f"k{i % 3}", 7, day + dt.timedelta(days=i % 2), ("x", "y")) for i in range(23)]
    with store.engine.begin() as c:
        c.connection.driver_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 45)
        write_batch(c, rows)  # 2 spend rows, 11 tag rows, 4 rollup rows per statement
    assert sorted(store.spend.request_ids()) == sorted(f"r{i}" for i in range(23))
    assert {r["group"]: r["requests"] for r in store.spend.report("key")} == {
        "k0": 8, "k1": 8, "k2": 7,
    }  # fmt: skip
    assert {r["group"]: r["cost_micro"] for r in store.spend.report("tag")} == {
        "x": 161, "y": 161,
    }  # fmt: skip
    assert sum(r["cost_micro"] for r in store.spend.report("day")) == 161
    store.close()
