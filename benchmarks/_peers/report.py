"""Rich tables of the results: one per metric, rows = targets, each cell with its ratio to
llama-server (the reference the acceptance criteria are written against)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

REFERENCE = "llama-server"


def _cell(value: float | None, ref: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:,.1f}{unit}"
    if ref:
        text += f" ({value / ref:.2f}x)"
    return text


def _table(title: str, columns: list[str], rows: dict[str, list[float | None]], note: str) -> Table:
    table = Table(
        title=title, caption=note, title_justify="left", caption_justify="left", min_width=72
    )
    table.add_column("target", min_width=16)
    for col in columns:
        table.add_column(col, justify="right")
    rows = {name: values for name, values in rows.items() if any(v is not None for v in values)}
    ref = rows.get(REFERENCE, [None] * len(columns))
    for name, values in rows.items():
        table.add_row(name, *(_cell(v, r) for v, r in zip(values, ref, strict=True)))
    return table


def _load(avg: list[float] | None) -> str:
    return "—" if avg is None else " ".join(f"{x:.2f}" for x in avg)


def _show(console: Console, table: Table) -> None:
    if table.row_count:  # phases that did not run leave no table
        console.print(table)


def print_tables(meta: dict, results: dict[str, dict]) -> None:
    console = Console(width=max(110, Console().width))  # pipes report 80 columns
    served = {n: r for n, r in results.items() if "skipped" not in r}
    levels = [str(c) for c in meta["levels"]]
    thr = {
        n: [r.get("throughput", {}).get(c, {}).get("tok_s") for c in levels]
        for n, r in served.items()
    }
    _show(
        console,
        _table(
            "Aggregate output tokens/s (closed loop)",
            [f"c={c}" for c in levels],
            thr,
            f"ratio vs {REFERENCE} in brackets; higher is better",
        ),
    )
    short = [
        f"{n}@c={c}: {v['mean_completion_tokens']} tok/req, {v['errors']} errors"
        for n, r in served.items()
        for c, v in r.get("throughput", {}).items()
        if v.get("errors") or (v.get("mean_completion_tokens") or 0) < 0.95 * meta["max_tokens"]
    ]
    if short:
        console.print("[yellow]short or failed requests:[/] " + "; ".join(short))
    single = {n: [r.get("single", {}).get("decode_tok_s")] for n, r in served.items()}
    _show(console, _table("Single-stream decode tokens/s", ["tok/s"], single, "higher is better"))
    ttft = {
        n: [r.get("ttft", {}).get("cold_p50_ms"), r.get("ttft", {}).get("cached_p50_ms")]
        for n, r in served.items()
    }
    _show(
        console,
        _table(
            "TTFT p50, ms",
            ["~1,000-token prompt", "same ~900-token prefix"],
            ttft,
            "lower is better; HF has no cross-request prefix cache",
        ),
    )
    rss_cols = sorted(
        {k for r in served.values() for k in r.get("rss", {}) if k.endswith("mib")},
        key=lambda k: (k != "start_mib", int(k.split("_")[1]) if "_" in k[6:] else 0),
    )
    rss = {n: [r["rss"].get(k) for k in rss_cols] for n, r in served.items() if "rss" in r}
    if rss:
        _show(
            console,
            _table(
                "Server RSS, MiB (process + children)",
                [k.removesuffix("_mib").replace("_", " ") for k in rss_cols],
                rss,
                "lower is better; growth from 'after 200' to the last column is what matters",
            ),
        )
    for name, r in results.items():
        if "skipped" in r:
            console.print(f"[yellow]{name} skipped:[/] {r['skipped']}")
        if r.get("skipped_levels"):
            console.print(f"[yellow]{name} not run at concurrency {r['skipped_levels']}[/]")
        for failure in r.get("failures", []):
            console.print(f"[red]{name} failed:[/] {failure[-300:]}")
    console.print(
        f"load average (1/5/15 min): start {_load(meta['loadavg_start'])}, "
        f"end {_load(meta.get('loadavg_end'))}"
        f" on {meta['cpus']} CPUs"
    )
