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


def step_line(step: Any) -> str:
    """One line per sweep / find-max step, printed as soon as the step ends."""
    row = step.row()
    verdict = (
        "" if row["passed"] is None else (" [green]pass[/]" if row["passed"] else " [red]miss[/]")
    )
    gp = "" if row["goodput"] is None else f" · goodput {row['goodput']:.1%}"
    return (
        f"{step.kind} {step.value:g}: {row['requests_per_s']:,.2f} req/s · TTFT p99 "
        f"{_fmt(row['ttft_p99_ms'])} ms · TPOT p99 {_fmt(row['tpot_p99_ms'])} ms · "
        f"{row['failed']} failed{gp}{verdict}"
    )


def render_steps(doc: dict[str, Any], console: Console) -> None:
    """The sweep table (and the --find-max verdict)."""
    kind = doc["kind"]
    table = Table(title=f"Sweep over {kind}" if "find_max" not in doc else "find-max steps")
    cols = (
        (kind, kind),
        ("req/s", "requests_per_s"),
        ("tok/s", "output_tokens_per_s"),
        ("TTFT p50", "ttft_p50_ms"),
        ("TTFT p99", "ttft_p99_ms"),
        ("TPOT p50", "tpot_p50_ms"),
        ("TPOT p99", "tpot_p99_ms"),
        ("fail", "failed"),
        ("goodput", "goodput"),
    )
    table.add_column("#", justify="right")
    for label, _ in cols:
        table.add_column(label, justify="right")
    for i, row in enumerate(doc["table"], 1):
        cells = []
        for _, c in cols:
            v = row[c]
            if c == "goodput" and v is not None:
                mark = {True: " ✓", False: " ✗", None: ""}[row["passed"]]
                cells.append(f"{v:.0%}{mark}")
            elif c == kind:
                cells.append(f"{v:g}")
            elif isinstance(v, float):
                cells.append(_fmt(v))
            else:
                cells.append("—" if v is None else str(v))
        table.add_row(str(i), *cells)
    console.print(table)
    fm = doc.get("find_max")
    if fm:
        best = fm["best_rate"]
        target = f"{fm['goodput_target']:.0%}"
        if best is None:
            console.print(f"[bold red]no rate kept goodput ≥ {target}[/] (even the first step)")
        else:
            console.print(f"[bold]highest rate with goodput ≥ {target}: {best:g} req/s[/]")


def window_line(samples: list[tuple[float, float, bool]], start: float, end: float) -> str:
    """A soak's periodic summary, from hot-path stamps only (E2E and first byte)."""
    from slipstream.bench.stats import summarize

    ok = [s for s in samples if not s[2]]
    failed = len(samples) - len(ok)
    e2e = summarize([s[0] for s in ok], 1000.0)
    fb = summarize([s[1] for s in ok], 1000.0)
    span = max(end - start, 1e-9)
    return (
        f"[{start:,.1f}–{end:,.1f} s] {len(ok)} ok · {failed} failed · "
        f"{len(samples) / span:,.2f} req/s · first byte p50 {_fmt(fb['p50'])} p99 "
        f"{_fmt(fb['p99'])} ms · E2E p50 {_fmt(e2e['p50'])} p99 {_fmt(e2e['p99'])} ms"
    )
