"""The `slipstream` CLI: help, model listing, clean errors, and a real `serve` run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from slipstream.cli.main import app

runner = CliRunner()
SLIPSTREAM = str(Path(sys.executable).with_name("slipstream"))


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "engine", "models"):
        assert command in result.output


def test_serve_help_teaches_the_options() -> None:
    result = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in (
        "--model",
        "--max-num-seqs",
        "--kv-cache-gib",
        "--no-prefix-caching",
        "--max-queue",
        "--config",
    ):
        assert option in result.output
    assert "503" in result.output  # --max-queue says what happens when it is exceeded


def test_models_lists_the_embedded_model_and_its_file() -> None:
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    line = next(line for line in result.output.splitlines() if line.startswith("smollm2-135m"))
    assert Path(line.split("\t")[1]).is_file()


def test_bad_model_name_exits_with_one_clear_message() -> None:
    proc = subprocess.run(
        [SLIPSTREAM, "serve", "--model", "no-such-model"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "no-such-model" in proc.stderr and "known: smollm2-135m" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.slow
def test_serve_answers_then_stops_on_sigint() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            SLIPSTREAM,
            "serve",
            "--port",
            str(port),
            "--max-model-len",
            "256",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        body = {
            "model": "smollm2-135m",
            "prompt": "The capital of France is",
            "max_tokens": 3,
            "temperature": 0,
        }
        r = httpx.post(base + "/v1/completions", json=body, timeout=60)
        assert r.status_code == 200 and "Paris" in r.json()["choices"][0]["text"]
        assert r.json()["model"] == "smollm2-135m"
    finally:
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(60)
    assert proc.returncode == 0
