"""`slipstream serve --config` as a real process: a bad file fails fast with one line naming the
field; SIGHUP reloads the file without a restart; without a master key there is no admin route."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

from .upstream import free_port

SLIPSTREAM = str(Path(sys.executable).with_name("slipstream"))


def deployment_yaml(name: str) -> str:
    return (
        f"  - name: {name}\n    deployments:\n"
        "      - {provider: openai, model: m, api_base: 'http://127.0.0.1:9/v1'}\n"
    )


def test_bad_config_exits_with_one_line_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "models:\n  - name: chat\n    deployments:\n"
        "      - {provider: openai, model: m, api_base: 'ftp://nowhere'}\n"
    )
    proc = subprocess.run(
        [SLIPSTREAM, "serve", "--config", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "models[0].deployments[0].api_base" in lines[0] and "http" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_bad_engine_flags_exit_with_one_line_naming_the_choices() -> None:
    for flag, value, expected in (
        ("--kv-cache-dtype", "fp7", "--kv-cache-dtype must be one of auto, float32"),
        ("--activation-bits", "12", "--activation-bits must be 8 or 16"),
    ):
        proc = subprocess.run(
            [SLIPSTREAM, "engine", flag, value], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {expected}"), proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout


def test_sighup_reloads_the_config_file_and_requests_are_logged_as_json(tmp_path: Path) -> None:
    config = tmp_path / "slipstream.yaml"
    config.write_text("models:\n" + deployment_yaml("first"))
    port = free_port()
    proc = subprocess.Popen(
        [
            SLIPSTREAM,
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
            "--log-level",
            "info",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)

        def ids() -> list[str]:
            return [m["id"] for m in httpx.get(base + "/v1/models").json()["data"]]

        assert ids() == ["first"]
        assert httpx.post(base + "/admin/reload").status_code == 404  # no master_key
        config.write_text("models:\n" + deployment_yaml("first") + deployment_yaml("second"))
        os.kill(proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while ids() != ["first", "second"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ids() == ["first", "second"]
        body = {"model": "second", "messages": [{"role": "user", "content": "hi"}]}
        r = httpx.post(base + "/v1/chat/completions", json=body, headers={"x-request-id": "r-77"})
        assert r.status_code == 502 and r.headers["x-request-id"] == "r-77"  # nothing listens
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    records = [orjson.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    (record,) = [r for r in records if r.get("request_id") == "r-77"]
    assert record["event"] == "request" and record["model"] == "second"
    assert record["status"] == 502 and record["error_kind"] == "connection"
