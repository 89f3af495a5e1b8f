"""Closed-loop HTTP load from `wrk` (C, not Python), read back as exact numbers.

wrk posts the same chat-completion body over keep-alive connections for a fixed time. A Lua
`done()` hook prints the summary as one JSON line (percentiles in microseconds, straight from
wrk's histogram), so nothing is scraped from its human-readable text. wrk only knows durations, so the memory
soak runs it in short rounds until a request count is reached.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

MARKER = "WRKJSON "

_LUA = r"""
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "application/json"
%(headers)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(marker)s{"requests":%%d,"duration_us":%%d,"bytes":%%d,"err_connect":%%d,"err_read":%%d,' ..
    '"err_write":%%d,"err_status":%%d,"err_timeout":%%d,"p50_us":%%d,"p90_us":%%d,' ..
    '"p99_us":%%d,"max_us":%%d,"mean_us":%%f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


@dataclass(frozen=True)
class LoadResult:
    """One wrk run; latencies in milliseconds."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    errors: int  # socket errors + non-2xx/3xx responses
    non_2xx: int
    cpu_us_per_request: float | None = None  # of the server under test, set by the caller

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def wrk_path() -> str | None:
    return shutil.which("wrk")


def write_script(directory: Path, name: str, body: bytes, headers: dict[str, str]) -> Path:
    """The Lua script that posts `body` with `headers` on every request."""
    lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    text = _LUA % {
        "body": body.decode(),
        "headers": lines,
        "marker": MARKER,
    }
    path = directory / f"{name}.lua"
    path.write_text(text)
    return path


def run_wrk(
    url: str,
    script: Path,
    connections: int,
    duration_s: float,
    *,
    threads: int = 1,
    timeout_s: float = 10.0,
    taskset: str | None = None,
) -> LoadResult:
    """Run wrk once and parse its JSON summary (raises RuntimeError with wrk's output if absent)."""
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(script),
        url,
    ]
    if taskset:
        argv = ["taskset", "-c", taskset, *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 120)
    line = next((x for x in proc.stdout.splitlines() if x.startswith(MARKER)), None)
    if line is None:
        raise RuntimeError(
            f"wrk gave no summary (rc {proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    d = json.loads(line[len(MARKER) :])
    seconds = d["duration_us"] / 1e6
    socket_errors = d["err_connect"] + d["err_read"] + d["err_write"] + d["err_timeout"]
    return LoadResult(
        requests=d["requests"],
        seconds=round(seconds, 3),
        rps=round(d["requests"] / seconds, 1) if seconds else 0.0,
        p50_ms=d["p50_us"] / 1000,
        p90_ms=d["p90_us"] / 1000,
        p99_ms=d["p99_us"] / 1000,
        max_ms=d["max_us"] / 1000,
        mean_ms=round(d["mean_us"] / 1000, 4),
        errors=socket_errors + d["err_status"],
        non_2xx=d["err_status"],
    )


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="gateway_overhead-"))
