"""End to end: `slipstream bench` against our own `slipstream serve` (SmolLM2, real engine).

A shared-prefix workload (every request starts with the same ~200-token system prompt) must
show up as prefix-cache hits in the server's Prometheus metrics, and every request must
complete with exactly the asked-for number of tokens.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

HITS = re.compile(r"^slipstream:prefix_cache_hits_total\s+([0-9.eE+]+)", re.M)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli() -> list[str]:
    exe = shutil.which("slipstream", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "slipstream.cli.main"]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def prefix_hits(base: str) -> float:
    m = HITS.search(_get(f"{base}/metrics"))
    assert m, "the server's /metrics has no slipstream:prefix_cache_hits_total"
    return float(m.group(1))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*_cli(), "serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"slipstream serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
                )
            try:
                _get(f"{base}/health")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"slipstream serve did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_shared_prefix_workload_hits_the_prefix_cache(served: str, tmp_path: Path) -> None:
    model = json.loads(_get(f"{served}/v1/models"))["data"][0]["id"]
    before = prefix_hits(served)
    out = tmp_path / "run.json"
    proc = subprocess.run(
        [
            *_cli(), "bench", "--url", f"{served}/v1", "--model", model,
            "--concurrency", "2", "--requests", "6", "--input-tokens", "24",
            "--output-tokens", "4", "--shared-prefix", "1:200:1.0",
            "--output", str(out), "--quiet", "--html", str(tmp_path / "run.html"),
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    s = result["summary"]
    assert s["requests"] == {
        "total": 6,
        "completed": 6,
        "failed": 0,
        "errors_by_class": {},
        "error_examples": {},
    }
    assert s["tokens"]["output_total"] == 6 * 4 and s["tokens"]["short_outputs"] == 0
    assert s["ttft_ms"]["p50"] > 0 and s["tpot_ms"]["count"] == 6
    # at least the 4 requests sent after the first pair reuse the ~200-token system prompt
    assert prefix_hits(served) - before >= 4 * 64
    assert (tmp_path / "run.html").exists()
