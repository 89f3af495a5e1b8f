from __future__ import annotations

import datetime as dt

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from slipstream.store import Limits, NotFound, SpendRow, Store
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


def _row(i: int, key: str, cost: int, day: dt.datetime, tags: tuple[str, ...] = ()) -> SpendRow:
    return SpendRow(
        ts=day, request_id=f"r{i}", status=200, key_id=key, team_id="team_a", model="chat",
        prompt_tokens=10, cached_tokens=2, completion_tokens=5, cost_micro=cost, tags=tags,
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
        SpendRow(
            ts=rng.choice(days),
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
    assert store.spend.prune(dt.date(2026, 1, 3)) == sum(1 for r in rows if r.ts.day < 3)
    assert store.spend.count() == sum(1 for r in rows if r.ts.day == 3)
    assert store.spend.report("key") == before  # totals come from the rollup
    k1 = sum(r.cost_micro for r in rows if r.key_id == "k1" and r.ts.day >= 2)
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
