"""`slipstream serve` stopped by SIGTERM writes every ledger row before it exits, with status 0.

uvicorn re-raises the SIGTERM it caught once its server returns; with the default action the
process used to die right there, before the clean-up flushed the spend ledger, so up to one
flush interval of rows was lost on every ordinary stop. The flush interval here is (60 s) far
longer than the test: every row in the database got there through the final flush.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tests.gateway.upstream import Upstream, free_port

from slipstream.store import Store

from .conftest import MASTER

SLIPSTREAM = str(Path(sys.executable).with_name("slipstream"))
N = 24


def _config(path: Path, api_base: str) -> None:
    path.write_text(
        "master_key: env:SLIP_TEST_MASTER\ndatabase_url: env:SLIP_TEST_DB\n"
        "tenancy:\n  spend_flush_s: 60\n"
        "models:\n  - name: chat\n    deployments:\n"
        f"      - {{provider: openai, model: m, api_base: '{api_base}',"
        " prices: {input_per_mtok: 1, output_per_mtok: 1}}\n"
    )


def _wait_ready(proc: subprocess.Popen[str], base: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError("slipstream serve did not become ready")


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_flushes_the_spend_ledger_and_exits_0(tmp_path: Path, workers: int) -> None:
    db_url = f"sqlite:///{tmp_path / 'slip.db'}"
    store = Store.open(db_url)  # migrated before the workers start
    key, rec = store.tenants.create_key()
    store.close()
    config = tmp_path / "slipstream.yaml"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with Upstream("up") as upstream:
        _config(config, upstream.api_base)
        argv = [SLIPSTREAM, "serve", "--config", str(config), "--port", str(port)]
        proc = subprocess.Popen(
            [*argv, "--workers", str(workers), "--log-level", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "SLIP_TEST_MASTER": MASTER, "SLIP_TEST_DB": db_url},
        )
        try:
            _wait_ready(proc, base)
            body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
            for _ in range(N):  # a fresh connection each: with 2 workers both get some
                r = httpx.post(
                    base + "/v1/chat/completions",
                    json=body,
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=10,
                )
                assert r.status_code == 200, r.text
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err[-3000:]
    assert "rows not written" not in err
    store = Store.open(db_url)
    try:
        assert store.spend.count() == N
        assert store.spend.report("key")[0]["requests"] == N
        assert store.spend.report("key")[0]["group"] == rec.id
    finally:
        store.close()
