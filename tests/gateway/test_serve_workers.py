"""`slipstream serve --workers N`: N gateway processes share the port (SO_REUSEPORT); refused
with one clear line when a deployment is local (the embedded engine is one process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .upstream import free_port

SLIPSTREAM = str(Path(sys.executable).with_name("slipstream"))
CONFIG = "models:\n  - name: chat\n    deployments:\n      - {provider: openai, model: m, api_base: 'http://127.0.0.1:9/v1'}\n"


def children_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out


def test_two_workers_share_the_port(tmp_path: Path) -> None:
    config = tmp_path / "slipstream.yaml"
    config.write_text(CONFIG)
    port = free_port()
    proc = subprocess.Popen(
        [SLIPSTREAM, "serve", "--config", str(config), "--port", str(port), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        ready = 0
        while time.monotonic() < deadline and ready < 20:
            assert proc.poll() is None, proc.communicate()
            try:  # a fresh connection each time, so the kernel may pick either worker
                ready += httpx.get(base + "/v1/models", timeout=2).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.2)
        assert ready == 20
        workers = [
            c
            for c in children_of(proc.pid)
            if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()
        ]
        assert len(workers) == 1  # the parent serves too
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def test_workers_with_a_local_deployment_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "slipstream.yaml"
    config.write_text(
        "models:\n  - name: chat\n    deployments:\n      - {provider: local, model: smollm2-135m}\n"
    )
    proc = subprocess.run(
        [
            SLIPSTREAM,
            "serve",
            "--config",
            str(config),
            "--workers",
            "2",
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "--workers > 1 needs a config without local deployments" in proc.stderr
    assert "Traceback" not in proc.stderr
