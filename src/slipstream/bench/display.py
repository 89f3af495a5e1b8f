"""Terminal output: live progress while running, and the summary table afterwards."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from slipstream.bench.runner import Progress

_ROWS = (
    ("TTFT", "ttft_ms"),
    ("TPOT", "tpot_ms"),
    ("ITL / token", "itl_ms"),
    ("ITL / chunk", "itl_chunk_ms"),
    ("E2E", "e2e_ms"),
    ("Max stall", "max_stall_ms"),
)
_STATS = ("mean", "stddev", "p50", "p90", "p95", "p99", "p99.9")


def _fmt(v: Any) -> str:
    return "—" if v is None else f"{v:,.2f}"


def progress_line(p: Progress, total: int | None) -> str:
    of = f"/{total}" if total else ""
    return (
        f"[bold]{p.completed}{of}[/] done · [red]{p.failed} failed[/] · "
        f"{p.completed / p.elapsed if p.elapsed else 0:,.1f} req/s · "
        f"{p.chunks / p.elapsed if p.elapsed else 0:,.0f} reads/s · {p.elapsed:,.1f} s"
    )


def render_summary(result: dict[str, Any], console: Console) -> None:
    s = result["summary"]
    req, thr = s["requests"], s["throughput"]
    console.print(
        f"[bold]{req['completed']}[/] completed, [bold red]{req['failed']}[/] failed in "
        f"{s['duration_s']:.2f} s · {thr['requests_per_s']:,.2f} req/s · "
        f"{thr['output_tokens_per_s']:,.1f} output tok/s"
    )
    table = Table(title="Latency (ms, from each request's scheduled time)")
    table.add_column("metric")
    for stat in _STATS:
        table.add_column(stat, justify="right")
    for label, key in _ROWS:
        table.add_row(label, *(_fmt(s[key].get(stat)) for stat in _STATS))
    console.print(table)
    if req["errors_by_class"]:
        for cls, n in req["errors_by_class"].items():
            console.print(f"[red]error {cls}[/] ×{n}: {req['error_examples'].get(cls)}")
    gp = s["goodput"]
    if gp["slo_ms"]:
        att = ", ".join(f"{k} {v:.1%}" for k, v in gp["attainment"].items())
        console.print(f"goodput {gp['requests_per_s']:.2f} req/s · attainment: {att}")
    client = result["client"]
    console.print(
        f"client: dispatch lag p99 {_fmt(client['dispatch_lag_ms']['p99'])} ms · loop lag p99 "
        f"{_fmt(client['loop_lag_ms']['p99'])} ms · {client['workers']} worker(s)"
    )
    for w in client["warnings"]:
        console.print(f"[bold yellow]warning:[/] {w}")
    for name, data in result.get("views", {}).items():
        render_view(name, data, console)
    for row in result["slo"]["checks"]:
        mark = "[green]PASS[/]" if row["passed"] else "[bold red]FAIL[/]"
        console.print(
            f"SLO {row['key']} ≤ {row['limit']:g}: observed {_fmt(row['observed'])} {mark}"
        )


def render_view(name: str, data: dict[str, Any], console: Console) -> None:
    table = Table(title=f"As {name} reports it")
    table.add_column("metric")
    table.add_column("value", justify="left")
    for key, value in data.items():
        if isinstance(value, dict):
            shown = " ".join(f"{k}={_fmt(v)}" for k, v in value.items() if k != "count")
            table.add_row(key, shown)
        else:
            table.add_row(key, _fmt(value) if isinstance(value, float) else str(value))
    console.print(table)
