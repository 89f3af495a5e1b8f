"""Two gateway processes sharing Redis enforce one rate limit and one budget (L ± 1)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as sync_redis

from slipstream.store import Limits, Store

from .conftest import REDIS_URL

CHILD = Path(__file__).with_name("replica_child.py")
ROOT = Path(__file__).parents[2]


def _run_replicas(url: str, key: str, per_replica: int) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start_at = f"{time.time() + 4.0:.3f}"  # both are up and loaded by then
    procs = [
        subprocess.Popen(
            [sys.executable, str(CHILD), url, key, str(per_replica), start_at],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for _ in range(2)
    ]
    total = 0
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err[-2000:]
        total += int(out.strip().splitlines()[-1])
    return total


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        (Limits(rpm=13), 13),  # requests per minute
        # 50000 micro-dollars, worst case 11000 per request: 5 reservations fit under 100%
        (Limits(budget_micro=50_000, budget_window="daily"), 5),
    ],
    ids=["rpm", "budget"],
)
def test_two_processes_sharing_redis_enforce_one_limit(
    tmp_path: Path, limits: Limits, expected: int
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    store = Store.open(url)
    key, rec = store.tenants.create_key(limits=limits)
    store.close()
    try:
        admitted = _run_replicas(url, key, per_replica=20)
    finally:
        r = sync_redis.Redis.from_url(REDIS_URL)
        for k in r.scan_iter(f"*{rec.id}*"):
            r.delete(k)
        r.close()
    assert expected - 1 <= admitted <= expected + 1
