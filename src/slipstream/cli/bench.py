"""``slipstream bench``: load-test any OpenAI-compatible URL; ``slipstream bench compare A B``.

Thin: parse and validate arguments, run the plan, write records + results, print, set the
exit code (0 ok, 1 an SLO missed, 2 bad arguments or unreachable target, 3 every request failed).
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from slipstream.bench.http_client import Target
from slipstream.bench.lengths import LengthDist
from slipstream.bench.plan import RunPlan
from slipstream.bench.record import write_jsonl
from slipstream.bench.result import build_result, write_result
from slipstream.bench.runner import auto_workers, run_inline
from slipstream.bench.schedule import ScheduleConfig, parse_spike
from slipstream.bench.slo import goodput_bounds, parse_slos
from slipstream.bench.sweep import parse_sweep
from slipstream.bench.terminal import run_live, run_steps
from slipstream.bench.trace import load_trace
from slipstream.bench.views import VIEWS
from slipstream.bench.workload import SharedPrefix, WorkloadConfig

app = typer.Typer(help="Load-test an OpenAI-compatible endpoint with numbers you can trust.")


def _fail(console: Console, message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


def check_reachable(target: Target, timeout: float = 3.0, wait: float = 0.0) -> None:
    """Fail fast with a clear message instead of N identical connection errors.

    ``wait`` > 0 polls until the server accepts connections (a server started just before,
    e.g. ``slipstream serve & slipstream bench --wait-ready 120 ...``).
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            with socket.create_connection((target.host, target.port), timeout=timeout):
                return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise ConnectionError(
                    f"cannot connect to {target.host}:{target.port}: {exc}"
                ) from None
            time.sleep(0.5)


def _goodput_bounds(text: str | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, _, value = part.partition("=")
        key = key.strip().removesuffix("_ms")
        if key not in ("ttft", "tpot", "e2e", "itl", "max_stall"):
            raise ValueError(
                f"bad --goodput key {key!r}: use ttft_ms, tpot_ms, e2e_ms, itl_ms, max_stall_ms"
            )
        out[key] = float(value)
    return out


@app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(help="Base URL, e.g. http://127.0.0.1:8000/v1")] = None,
    model: Annotated[str | None, typer.Option(help="Model name sent in each request")] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="SLIPSTREAM_API_KEY", help="Bearer token")
    ] = None,
    endpoint: Annotated[str, typer.Option(help="chat or completions")] = "chat",
    concurrency: Annotated[
        int | None, typer.Option(help="Closed loop: N requests in flight (with --rate: a cap)")
    ] = None,
    rate: Annotated[float | None, typer.Option(help="Open loop: requests/s")] = None,
    pattern: Annotated[
        str, typer.Option(help="Arrivals for --rate: poisson, constant, gamma")
    ] = "poisson",
    burstiness: Annotated[float, typer.Option(help="Gamma shape (<1 burstier than Poisson)")] = 1.0,
    duration: Annotated[float | None, typer.Option(help="Stop scheduling after S seconds")] = None,
    requests: Annotated[int | None, typer.Option(help="Stop after N requests")] = None,
    input_tokens: Annotated[
        str, typer.Option(help="MEAN[,STDDEV] or KIND:A[,B] (fixed/uniform/normal/lognormal)")
    ] = "128",
    output_tokens: Annotated[str, typer.Option(help="MEAN[,STDDEV] or KIND:A[,B]")] = "128",
    shared_prefix: Annotated[
        str | None, typer.Option(help="COUNT:TOKENS[:FRACTION] shared system prompts")
    ] = None,
    dataset: Annotated[Path | None, typer.Option(help="ShareGPT JSON or JSONL of prompts")] = None,
    dataset_output_lengths: Annotated[
        bool, typer.Option(help="Use the dataset's answer lengths")
    ] = False,
    tokenizer: Annotated[
        Path | None, typer.Option(help="tokenizer.json of the served model")
    ] = None,
    ignore_eos: Annotated[
        bool, typer.Option(help="Send ignore_eos + min_tokens to force lengths")
    ] = True,
    extra_body: Annotated[
        str | None, typer.Option(help="JSON object merged into every request")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for prompts, lengths and arrivals")] = 0,
    timeout: Annotated[float, typer.Option(help="Per-request timeout (s)")] = 600.0,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: from the load)")
    ] = None,
    output: Annotated[Path, typer.Option(help="Results JSON")] = Path("bench-result.json"),
    records: Annotated[
        Path | None, typer.Option(help="Per-request JSONL (default: OUTPUT.records.jsonl)")
    ] = None,
    slo: Annotated[
        str | None, typer.Option(help="Gate, e.g. ttft_p99_ms=800,tpot_p99_ms=25")
    ] = None,
    goodput: Annotated[
        str | None, typer.Option(help="Per-request goodput bounds, e.g. ttft_ms=500,tpot_ms=50")
    ] = None,
    report_as: Annotated[
        list[str] | None, typer.Option(help=f"Also show as: {', '.join(VIEWS)}")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No live progress")] = False,
    sweep: Annotated[
        str | None, typer.Option(help="One run per load: rate=1,2,4 or concurrency=1,8,32")
    ] = None,
    find_max: Annotated[
        bool, typer.Option(help="Search the highest rate keeping --goodput-target (needs SLOs)")
    ] = False,
    goodput_target: Annotated[
        float, typer.Option(help="--find-max: fraction of requests meeting every SLO")
    ] = 0.9,
    max_rate: Annotated[float, typer.Option(help="--find-max: highest rate to try")] = 10_000.0,
    ramp_to: Annotated[
        float | None, typer.Option(help="Ramp: rate goes linearly from --rate to this")
    ] = None,
    spike: Annotated[
        str | None, typer.Option(help="Spike PEAK:START:LENGTH (req/s, s, s) on top of --rate")
    ] = None,
    report_every: Annotated[
        float | None, typer.Option(help="Soak: print a summary of each window of S seconds")
    ] = None,
    trace: Annotated[
        Path | None, typer.Option(help="Replay a JSONL trace of arrival offsets and lengths")
    ] = None,
    trace_time_unit: Annotated[str, typer.Option(help="Trace timestamps in s or ms")] = "s",
    turns: Annotated[
        int, typer.Option(help="Turns per multi-turn session (--requests counts sessions)")
    ] = 1,
    think_time: Annotated[
        str, typer.Option(help="Seconds between a reply and the next turn: MEAN[,STDDEV]")
    ] = "0",
    html: Annotated[
        Path | None, typer.Option(help="Also write a self-contained HTML report")
    ] = None,
    wait_ready: Annotated[
        float, typer.Option(help="Wait up to S seconds for the server to accept connections")
    ] = 0.0,
) -> None:
    """Run a load test and write results JSON + per-request JSONL."""
    if ctx.invoked_subcommand is not None:
        return
    console = Console(stderr=True)
    if not url or not model:
        raise _fail(console, "--url and --model are required")
    try:
        target = Target.parse(url, api_key)
        views = tuple(v.strip() for item in (report_as or []) for v in item.split(",") if v.strip())
        for v in views:
            if v not in VIEWS:
                raise ValueError(f"unknown --report-as {v!r}; expected one of {', '.join(VIEWS)}")
        if endpoint not in ("chat", "completions"):
            raise ValueError(f"unknown --endpoint {endpoint!r}; expected chat or completions")
        extra = json.loads(extra_body) if extra_body else {}
        if not isinstance(extra, dict):
            raise ValueError("--extra-body must be a JSON object")
        if dataset is not None and not dataset.exists():
            raise ValueError(f"--dataset {dataset}: no such file")
        if trace is not None and not trace.exists():
            raise ValueError(f"--trace {trace}: no such file")
        think = _think(think_time)
        if report_every is not None and not report_every > 0:
            raise ValueError(f"--report-every must be > 0 s, got {report_every:g}")
        workload = WorkloadConfig(
            model=model,
            input=LengthDist.parse(input_tokens),
            output=LengthDist.parse(output_tokens),
            endpoint=endpoint,
            shared_prefix=SharedPrefix.parse(shared_prefix) if shared_prefix else None,
            dataset=str(dataset) if dataset else None,
            tokenizer=str(tokenizer) if tokenizer else None,
            ignore_eos=ignore_eos,
            output_from_dataset=dataset_output_lengths,
            extra_body=extra,
            seed=seed,
            trace=str(trace) if trace else None,
            trace_time_unit=trace_time_unit,
            turns=turns,
            think_time=think[0],
            think_stddev=think[1],
        )
        if sweep and find_max:
            raise ValueError("give --sweep or --find-max, not both")
        sweep_spec = parse_sweep(sweep) if sweep else None
        start_rate = rate
        if find_max and rate is None:
            rate = 1.0  # the search's first step
        if sweep_spec and sweep_spec[0] == "rate" and rate is None:
            rate = sweep_spec[1][0]
        if sweep_spec and sweep_spec[0] == "concurrency" and concurrency is None and rate is None:
            concurrency = int(sweep_spec[1][0])
        schedule = ScheduleConfig(
            concurrency,
            rate,
            pattern,
            burstiness,
            seed,
            ramp_to=ramp_to,
            spike=parse_spike(spike) if spike else None,
            trace=str(trace) if trace else None,
            trace_time_unit=trace_time_unit,
        )
        if requests is None and duration is None:
            requests = len(load_trace(trace, trace_time_unit)) if trace else 100
        schedule.profile(duration)  # --ramp-to / --spike without --duration: fail now
        plan = RunPlan(url, workload, schedule, requests, duration, api_key, timeout)
        checks = parse_slos(slo)
        bounds = _goodput_bounds(goodput)
        if workers is not None and workers < 0:
            raise ValueError(f"--workers must be >= 0, got {workers}")
        if report_every is not None and workers == 0:
            raise ValueError("--report-every needs worker processes (drop --workers 0)")
    except (ValueError, json.JSONDecodeError) as exc:
        raise _fail(console, str(exc)) from None
    try:
        check_reachable(target, wait=wait_ready)
    except ConnectionError as exc:
        raise _fail(console, f"{exc} (is the server running at {url}?)") from None

    if sweep_spec or find_max:
        try:
            run_steps(
                plan,
                workers,
                sweep_spec,
                bounds or goodput_bounds(checks),
                output,
                records,
                find_max_args={
                    "target": goodput_target,
                    "start": start_rate or 1.0,
                    "max_rate": max_rate,
                }
                if find_max
                else None,
                html=html,
            )
        except ValueError as exc:
            raise _fail(console, str(exc)) from None
        return
    n_workers = auto_workers(plan) if workers is None else workers
    if n_workers == 0:
        outcome = run_inline(plan)
    else:
        outcome = run_live(plan, n_workers, console, quiet, report_every)
    records_path = records or output.with_suffix(".records.jsonl")
    write_jsonl(records_path, outcome.records)
    result = build_result(outcome, checks, bounds, views, str(records_path))
    write_result(output, result)

    from slipstream.bench.display import render_summary

    render_summary(result, Console())
    console.print(f"results: {output} · records: {records_path}")
    if html is not None:
        from slipstream.bench.html_report import run_html, write_html

        write_html(html, run_html(result, outcome.records))
        console.print(f"HTML report: {html}")
    if outcome.records and result["summary"]["requests"]["completed"] == 0:
        raise _fail(console, "every request failed (see errors above)", 3)
    if not result["slo"]["passed"]:
        raise typer.Exit(1)


def _think(text: str) -> tuple[float, float]:
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"bad --think-time {text!r}: expected MEAN[,STDDEV] seconds") from None
    if len(parts) > 2 or any(p < 0 for p in parts):
        raise ValueError(f"bad --think-time {text!r}: expected MEAN[,STDDEV] seconds >= 0")
    return parts[0], parts[1] if len(parts) > 1 else 0.0


@app.command()
def compare(
    a: Annotated[Path, typer.Argument(help="Baseline results JSON")],
    b: Annotated[Path, typer.Argument(help="Candidate results JSON")],
    alpha: Annotated[float, typer.Option(help="Significance level")] = 0.05,
) -> None:
    """Compare two runs metric by metric (Mann–Whitney U on per-request samples)."""
    from slipstream.bench.compare import compare_runs

    console = Console()
    try:
        rows = compare_runs(a, b, alpha)
    except (OSError, ValueError) as exc:
        raise _fail(Console(stderr=True), str(exc)) from None
    table = Table(title=f"{b} vs {a}")
    for col in ("metric", "median A", "median B", "change", "p-value", "significant"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    for r in rows:
        table.add_row(
            r["metric"],
            f"{r['median_a']:.2f}",
            f"{r['median_b']:.2f}",
            f"{r['change']:+.1%}",
            f"{r['p_value']:.3g}",
            "[bold]yes[/]" if r["significant"] else "no",
        )
    console.print(table)
