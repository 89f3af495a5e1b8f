"""The CLI: clear errors for bad arguments, records written even when requests fail, SLO gate."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slipstream.bench.record import read_jsonl
from slipstream.cli.bench import app

from .mock_server import MockServer

runner = CliRunner()


def bench(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.output


def base(url: str, tmp: Path, *extra: str) -> list[str]:
    return [
        "--url",
        url,
        "--model",
        "mock",
        "--output",
        str(tmp / "run.json"),
        "--workers",
        "0",
        "--input-tokens",
        "16",
        "--output-tokens",
        "8",
        *extra,
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "2", "--rate", "5", "--pattern", "bursty"], "unknown pattern 'bursty'"),
        (["--rate", "-3"], "--rate must be > 0"),
        (["--concurrency", "0"], "--concurrency must be >= 1"),
        (["--concurrency", "1", "--input-tokens", "abc"], "bad length spec 'abc'"),
        (["--concurrency", "1", "--slo", "ttft_p42_ms=3"], "bad --slo key"),
        (["--concurrency", "1", "--report-as", "nope"], "unknown --report-as 'nope'"),
        (["--concurrency", "1", "--shared-prefix", "4"], "bad --shared-prefix"),
    ],
)
def test_bad_arguments_give_clear_messages(tmp_path: Path, args: list[str], message: str) -> None:
    code, out = bench(*base("http://127.0.0.1:9/v1", tmp_path, *args))
    assert code == 2 and message in out, out


def test_missing_url_and_unreachable_url(tmp_path: Path) -> None:
    code, out = bench("--model", "m", "--concurrency", "1")
    assert code == 2 and "--url and --model are required" in out
    url = f"http://127.0.0.1:{free_port()}/v1"
    code, out = bench(*base(url, tmp_path, "--concurrency", "1"))
    assert code == 2 and "cannot connect to 127.0.0.1" in out and "is the server running" in out


def test_run_writes_results_and_records_and_views(server: MockServer, tmp_path: Path) -> None:
    code, out = bench(
        *base(
            server.url,
            tmp_path,
            "--concurrency",
            "2",
            "--requests",
            "6",
            "--extra-body",
            '{"mock": {"ttft_ms": 5, "itl_ms": 1}}',
            "--report-as",
            "vllm,llmperf",
            "--slo",
            "ttft_p99_ms=5000",
        )
    )
    assert code == 0, out
    result = json.loads((tmp_path / "run.json").read_text())
    assert result["schema"] == "slipstream.bench.result/v1"
    s = result["summary"]
    assert s["requests"]["completed"] == 6 and s["requests"]["failed"] == 0
    assert {"requests_per_s", "output_tokens_per_s"} <= set(s["throughput"])
    assert s["tokens"]["output_total"] == 6 * 8 and s["tokens"]["short_outputs"] == 0
    assert "p99" in result["client"]["dispatch_lag_ms"]
    assert set(result["views"]) == {"vllm", "llmperf"}
    assert result["slo"]["passed"] is True and "goodput" in s
    recs = list(read_jsonl(result["records_path"]))
    assert len(recs) == 6 and all(r.output_tokens == 8 for r in recs)
    assert "TTFT" in out and "As vllm reports it" in out


def test_slo_miss_exits_nonzero(server: MockServer, tmp_path: Path) -> None:
    code, out = bench(
        *base(
            server.url,
            tmp_path,
            "--concurrency",
            "1",
            "--requests",
            "2",
            "--extra-body",
            '{"mock": {"ttft_ms": 30, "itl_ms": 1}}',
            "--slo",
            "ttft_p99_ms=1,error_rate=0",
        )
    )
    assert code == 1 and "FAIL" in out
    slo = json.loads((tmp_path / "run.json").read_text())["slo"]
    assert [c["passed"] for c in slo["checks"]] == [False, True]


@pytest.mark.parametrize(
    ("mock", "error_class"), [({"status": 500}, "http_5xx"), ({"malformed": True}, "malformed_sse")]
)
def test_server_errors_still_write_records(
    server: MockServer, tmp_path: Path, mock: dict[str, object], error_class: str
) -> None:
    code, out = bench(
        *base(
            server.url,
            tmp_path,
            "--concurrency",
            "2",
            "--requests",
            "4",
            "--extra-body",
            json.dumps({"mock": mock}),
        )
    )
    assert code == 3 and "every request failed" in out and error_class in out
    result = json.loads((tmp_path / "run.json").read_text())
    assert result["summary"]["requests"]["errors_by_class"] == {error_class: 4}
    recs = list(read_jsonl(tmp_path / "run.records.jsonl"))
    assert len(recs) == 4 and {r.error_class for r in recs} == {error_class}


def test_worker_processes_and_compare(server: MockServer, tmp_path: Path) -> None:
    for name, ttft in (("a", 5), ("b", 25)):
        args = base(
            server.url,
            tmp_path,
            "--rate",
            "50",
            "--requests",
            "30",
            "--pattern",
            "constant",
            "--extra-body",
            json.dumps({"mock": {"ttft_ms": ttft, "itl_ms": 1}}),
        )
        args[args.index("--output") + 1] = str(tmp_path / f"{name}.json")
        args[args.index("--workers") + 1] = "1"
        code, out = bench(*args)
        assert code == 0, out
    res = json.loads((tmp_path / "b.json").read_text())
    assert res["client"]["workers"] == 1 and res["summary"]["requests"]["completed"] == 30
    code, out = bench("compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert code == 0, out
    ttft_row = next(line for line in out.splitlines() if "ttft_ms" in line)
    assert "yes" in ttft_row  # 5 ms vs 25 ms TTFT is significant


def test_wait_ready_polls_until_the_server_listens() -> None:
    """`--wait-ready S` (one-command first runs: `serve & bench --wait-ready 120`)."""
    import threading
    import time

    from slipstream.bench.http_client import Target
    from slipstream.cli.bench import check_reachable

    port = free_port()
    target = Target.parse(f"http://127.0.0.1:{port}/v1")
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match="cannot connect"):
        check_reachable(target, wait=1.0)  # nothing there: gives up after the wait
    assert time.monotonic() - t0 >= 1.0
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def late_start() -> None:
        listener.bind(("127.0.0.1", port))
        listener.listen()

    threading.Timer(0.7, late_start).start()
    try:
        t0 = time.monotonic()
        check_reachable(target, wait=10.0)
        assert 0.6 <= time.monotonic() - t0 < 5
    finally:
        listener.close()
