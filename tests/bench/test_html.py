"""The HTML report: self-contained, with the CDFs, timeline and throughput–latency curves."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from slipstream.bench.svg import cdf_points, nice_ticks
from slipstream.cli.bench import app

from .mock_server import MockServer

MOCK = json.dumps({"mock": {"ttft_ms": 5, "itl_ms": 2}})


def _run(server: MockServer, tmp: Path, *extra: str) -> str:
    res = CliRunner().invoke(
        app,
        [
            "--url", server.url, "--model", "m", "--workers", "0", "--output-tokens", "6",
            "--output", str(tmp / "r.json"), "--html", str(tmp / "r.html"),
            "--extra-body", MOCK, *extra,
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return (tmp / "r.html").read_text()


def _self_contained(html: str) -> None:
    assert "<script" not in html and not re.search(r'(src|href)="https?:', html)


def test_cdf_points_and_ticks() -> None:
    pts = cdf_points([3.0, 1.0, 2.0, 2.0])
    assert pts == [(1.0, 0.25), (2.0, 0.5), (2.0, 0.75), (3.0, 1.0)]
    thin = cdf_points([float(i) for i in range(10_000)], max_points=100)
    assert len(thin) <= 102 and thin[-1] == (9999.0, 1.0)
    assert nice_ticks(0, 97) == [0, 20, 40, 60, 80]


def test_run_report(server: MockServer, tmp_path: Path) -> None:
    html = _run(server, tmp_path, "--concurrency", "3", "--requests", "9")
    _self_contained(html)
    for title in ("TTFT CDF", "TPOT CDF", "ITL / token CDF", "E2E CDF", "Requests over time"):
        assert title in html
    assert html.count("<svg") == 5
    assert "9</b> completed" in html
    # the timeline draws two segments per request (waiting, then streaming)
    timeline = html[html.index("Requests over time") :]
    assert timeline.count('stroke="#1f77b4"/>') == 9


def test_sweep_report(server: MockServer, tmp_path: Path) -> None:
    html = _run(
        server,
        tmp_path,
        "--requests",
        "4",
        "--sweep",
        "concurrency=1,2",
        "--goodput",
        "ttft_ms=500",
    )
    _self_contained(html)
    assert "TTFT vs throughput" in html and "TPOT vs throughput" in html
    assert "Goodput vs concurrency" in html
    ttft_cdf = re.search(r"TTFT CDF.*?</svg>", html, re.S)
    assert ttft_cdf is not None and ttft_cdf.group(0).count("<polyline") == 2  # one per step
