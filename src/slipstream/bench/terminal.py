"""Running a plan from the terminal: live progress, soak summaries, sweep and find-max steps.

Kept out of the CLI module so the command stays a thin argument parser; everything here
prints with rich and writes the same files as a single run.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.live import Live

from slipstream.bench.display import (
    progress_line,
    render_steps,
    step_line,
    window_line,
)
from slipstream.bench.plan import RunPlan
from slipstream.bench.record import write_jsonl
from slipstream.bench.result import write_result
from slipstream.bench.runner import (
    Progress,
    RunOutcome,
    auto_workers,
    run_inline,
    run_processes,
)
from slipstream.bench.sweep import SweepStep, run_sweep, sweep_document
from slipstream.bench.sweep import find_max as search_max


def run_live(
    plan: RunPlan, workers: int, console: Console, quiet: bool, report_every: float | None
) -> RunOutcome:
    """Worker processes with a live progress line and, for soaks, a summary per window."""
    due = [report_every or 0.0]
    live = None if quiet else Live(console=console, refresh_per_second=4, transient=True)

    def on_progress(p: Progress) -> None:
        if live is not None:
            live.update(progress_line(p, plan.requests))
        if report_every and p.elapsed >= due[0]:
            (live.console if live is not None else console).print(
                window_line(p.window, due[0] - report_every, p.elapsed), soft_wrap=True
            )
            p.window.clear()
            due[0] += report_every

    if live is None:
        return run_processes(plan, workers, on_progress)
    with live:
        return run_processes(plan, workers, on_progress)


def run_steps(
    plan: RunPlan,
    workers: int | None,
    sweep_spec: tuple[str, list[float]] | None,
    bounds: dict[str, float],
    output: Path,
    records: Path | None,
    find_max_args: dict[str, float] | None,
    html: Path | None = None,
) -> None:
    """--sweep / --find-max: one full run per step, each step's records in its own JSONL."""
    console = Console()
    base = records or output.with_suffix(".records.jsonl")

    def run(p: RunPlan) -> RunOutcome:
        n = auto_workers(p) if workers is None else workers
        return run_inline(p) if n == 0 else run_processes(p, n)

    def on_step(step: SweepStep, outcome: RunOutcome) -> None:
        path = base.with_name(base.name.replace(".records", f".{step.kind}-{step.value:g}.records"))
        write_jsonl(path, outcome.records)
        step.result["records_path"] = str(path)
        console.print(step_line(step))

    if find_max_args is not None:
        found = search_max(plan, bounds, run, on_step=on_step, **find_max_args)  # type: ignore[arg-type]
        doc = sweep_document("rate", found.steps, found)
        steps = found.steps
    else:
        assert sweep_spec is not None
        steps = run_sweep(plan, sweep_spec[0], sweep_spec[1], run, bounds, on_step)
        doc = sweep_document(sweep_spec[0], steps)
    write_result(output, doc)
    render_steps(doc, console)
    console.print(f"results: {output}")
    if html is not None:
        from slipstream.bench.html_report import sweep_html, write_html

        write_html(html, sweep_html(doc))
        console.print(f"HTML report: {html}")
