#!/usr/bin/env python3
"""Slipstream's gateway vs LiteLLM proxy, side by side in one run, in front of an instant upstream.

What it measures (every process is started here on a free port and stopped at the end, also on
errors and Ctrl-C):

  upstream  a minimal OpenAI-compatible server that answers at once (raw ASGI on uvicorn +
            uvloop + httptools; chat.completion JSON with usage, or an SSE stream of 11 events)
  targets   direct (the upstream itself), slipstream (`slipstream serve --config`, one model ->
            one `openai` deployment, weighted routing and metrics on, tenancy off),
            slipstream-tenancy (the same config plus master_key, database_url and redis_url:
            a fresh PostgreSQL database per run, dropped at the end, and Redis for limits and
            budgets; clients send a virtual key made through POST /admin/keys with limits and
            a budget no run can reach, so auth, rate limits, budgets and the spend ledger all
            run on every request; --tenancy-store sqlite: a SQLite file in the logs folder and
            in-process limits instead), litellm (`litellm --config --num_workers 1`, master
            key, Prometheus callback, no DB, no Redis), litellm-db (the same with database_url
            to a fresh PostgreSQL database: its spend logging; needs Prisma's engine binaries,
            else reported as skipped with the reason), and, only if named in --targets, lean
            (a bare pass-through proxy: Python's floor here). With --baseline-src DIR also
            baseline and baseline-tenancy: slipstream and slipstream-tenancy again, the same
            .venv/bin/slipstream and config, but with PYTHONPATH=DIR so they run another
            checkout's code (a git worktree's src/, e.g. the commit before a change);
            baseline-tenancy gets its own fresh database (or SQLite file) and virtual key.
            Each Slipstream start logs where `import slipstream` resolves with its env (JSON:
            commands, imports, notes) and fails if a baseline would not run DIR's code. If
            --targets names neither baseline target, each twin of a named slipstream target
            is added right after it; naming one without --baseline-src is an error

  load      wrk (1 thread, keep-alive, closed loop) posts the same non-streaming chat
            completion at each --concurrency for --duration seconds; req/s, p50, p99. Targets
            take turns within each of --rounds rounds and the median of the rounds is
            reported, so drift in the machine's load hits all of them alike.
            Summary: added p50 (gateway p50 - direct p50) at concurrency 1, Slipstream's
            req/s / LiteLLM's, and slipstream-tenancy's req/s / slipstream's at the highest
            concurrency; with the baseline: added p50 at concurrency 1 of baseline vs
            slipstream and baseline-tenancy vs slipstream-tenancy (and the difference), and
            req/s at the highest concurrency, slipstream / baseline and slipstream-tenancy /
            baseline-tenancy (a regression shows as a positive difference or a ratio < 1).
  spend     once the bench key's ledger stopped growing and the servers stopped: its rows and
            cost, read from the database, against the requests its clients saw answered
            (wrk's requests in flight at each stop are billed but not counted: a few rows
            more is expected, fewer would be lost spend). The databases are then dropped.
  stream    time to the first SSE `data:` event of a streamed chat completion, one request at a
            time over a keep-alive socket (raw HTTP/1.1 client, so no library parsing cost per
            sample), p50/p90/p99; overhead = gateway p50 - direct p50.
  workers   Slipstream with 1 and --workers N workers at the highest concurrency (only if
            `slipstream serve` has --workers; otherwise the JSON says it has not).
  memory    a fresh Slipstream soaked with wrk until --memory-requests responses; RSS of the
            process (and with its children) after warm-up, 10,000 and the total.

Targets (from 2026-11-27 measurements of LiteLLM on the 2-core box): added p50 <= 0.5 ms,
>= 10x LiteLLM's req/s at concurrency 32, streaming first-event overhead <= 1 ms; with keys,
limits and spend on: added p50 still <= 0.5 ms and req/s at concurrency 32 >= 0.8x tenancy off.

Everything shares the machine's cores (upstream, gateway, wrk, this script); nothing is pinned
unless --taskset CPUS is given, which pins every process started here (wrk included) to CPUS.
The load average at the start and end is recorded: compare runs only when it was low.

Typical use (from the repository root):

  python3 -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip install 'litellm[proxy]' prometheus_client
  apt-get install -y wrk    # and PostgreSQL (trust auth for --pg-url) and Redis on 127.0.0.1
  .venv/bin/python benchmarks/gateway_overhead.py --quick                 # smoke, ~2 min
  .venv/bin/python benchmarks/gateway_overhead.py --output bench-results/gateway_overhead.json
  .venv/bin/python benchmarks/gateway_overhead.py --targets direct,slipstream --phases load,stream
  # keys, limits and spend embedded (SQLite file, in-process limits; no PostgreSQL or Redis):
  .venv/bin/python benchmarks/gateway_overhead.py --targets direct,slipstream,slipstream-tenancy --tenancy-store sqlite
  # no regression: this checkout against the commit before a change, side by side in one run
  # (tenancy off and on; PostgreSQL + Redis by default, --tenancy-store sqlite for SQLite)
  git worktree add --detach /tmp/base HEAD~1
  .venv/bin/python benchmarks/gateway_overhead.py --phases load --baseline-src /tmp/base/src \
      --targets direct,slipstream,slipstream-tenancy,baseline,baseline-tenancy
  # the same: with --baseline-src, each named slipstream target gets its baseline twin
  .venv/bin/python benchmarks/gateway_overhead.py --phases load --baseline-src /tmp/base/src \
      --targets direct,slipstream,slipstream-tenancy --tenancy-store sqlite
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from _gateway import report
from _gateway.names import SLIPSTREAM, TWIN, is_baseline
from _gateway.phases import Bench
from _gateway.targets import LITELLM_BIN, REPO, discover, litellm_version
from _gateway.tenancy import preflight
from _gateway.wrk_load import wrk_path

ALL_TARGETS = (
    "direct", "slipstream", "slipstream-tenancy", "baseline", "baseline-tenancy",
    "litellm", "litellm-db", "lean",
)  # fmt: skip
DEFAULT_TARGETS = ("direct", "slipstream", "slipstream-tenancy", "litellm", "litellm-db")
ALL_PHASES = ("load", "stream", "workers", "memory")
console = Console(width=None if sys.stdout.isatty() else 140)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 3 s per load level, 1 round, 300 streams, 20,000-request soak",
    )
    p.add_argument(
        "--targets",
        default=",".join(DEFAULT_TARGETS),
        help=f"comma-separated subset of {','.join(ALL_TARGETS)}; direct always runs",
    )
    p.add_argument(
        "--phases",
        default=",".join(ALL_PHASES),
        help=f"comma-separated subset of {','.join(ALL_PHASES)}",
    )
    p.add_argument("--concurrency", default="1,32", help="wrk connections per load level")
    p.add_argument(
        "--duration", type=float, default=None, help="seconds per load level (10; quick 3)"
    )
    p.add_argument(
        "--rounds", type=int, default=None, help="alternating rounds per level (3; quick 1)"
    )
    p.add_argument(
        "--stream-requests",
        type=int,
        default=None,
        help="streamed requests per target for first-event timing (2,000; quick 300)",
    )
    p.add_argument("--workers", type=int, default=2, help="Slipstream workers in the workers phase")
    p.add_argument(
        "--memory-requests",
        type=int,
        default=None,
        help="responses in the memory soak (100,000; quick 20,000)",
    )
    p.add_argument(
        "--no-litellm-metrics",
        action="store_true",
        help="run LiteLLM without its Prometheus callback (as in measured.md)",
    )
    p.add_argument(
        "--py-spy",
        action="store_true",
        help="sample each gateway with py-spy during round 1 at the highest concurrency; "
        "collapsed stacks in the logs folder, top functions in the JSON",
    )
    p.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="measure nothing: print the tables (and --markdown) of an earlier run's JSON",
    )
    p.add_argument("--litellm-bin", type=Path, default=LITELLM_BIN)
    p.add_argument(
        "--tenancy-store",
        choices=("postgres", "sqlite"),
        default="postgres",
        help="slipstream-tenancy's store: postgres (a fresh database on --pg-url, limits on "
        "--redis-url; default) or sqlite (a file in the logs folder, in-process limits)",
    )
    p.add_argument(
        "--pg-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL where each run creates (and drops) its databases",
    )
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="another checkout's src/ (e.g. a git worktree of the commit before a change): "
        "targets baseline and baseline-tenancy run the same binary with PYTHONPATH=DIR, in the "
        "same alternating rounds, and the summary compares them with this checkout's",
    )
    p.add_argument(
        "--taskset",
        default=None,
        metavar="CPUS",
        help="pin every process started here to these CPUs (taskset -c), e.g. 0,1",
    )
    p.add_argument("--startup-timeout", type=float, default=120.0)
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSON results (default bench-results/gateway_overhead-<time>.json)",
    )
    p.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="also write the docs/benchmarks.md section to this file",
    )
    args = p.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.stream_requests = args.stream_requests or (300 if args.quick else 2000)
    args.memory_requests = args.memory_requests or (20_000 if args.quick else 100_000)
    args.target_list = [t for t in args.targets.split(",") if t]
    if "direct" not in args.target_list:
        args.target_list.insert(0, "direct")
    args.phase_list = [x for x in args.phases.split(",") if x]
    args.levels = [int(c) for c in args.concurrency.split(",")]
    for name, allowed in ((args.target_list, ALL_TARGETS), (args.phase_list, ALL_PHASES)):
        bad = sorted(set(name) - set(allowed))
        if bad:
            p.error(f"unknown {bad}; choose from {','.join(allowed)}")
    named_baseline = [t for t in args.target_list if is_baseline(t)]
    if args.baseline_src is None:
        if named_baseline:
            p.error(f"{','.join(named_baseline)} need --baseline-src DIR")
    else:
        # Absolute: the servers run with the logs folder as their working directory.
        args.baseline_src = args.baseline_src.expanduser().resolve()
        if not named_baseline:  # each named slipstream target gets its twin right after it
            for now in [t for t in args.target_list if t in SLIPSTREAM]:
                i = args.target_list.index(now)
                args.target_list.insert(i + 1, TWIN[now])
    return args


def git_info(path: Path) -> dict[str, object] | None:
    """The commit checked out at `path` (any folder inside a work tree), and whether its
    tracked files differ from it; None if it is not in a git work tree."""

    def git(*a: str) -> str | None:
        r = subprocess.run(["git", "-C", str(path), *a], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    return {"commit": commit, "subject": git("log", "-1", "--format=%s"), "dirty": bool(dirty)}


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _raise_interrupt(_sig: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        res = json.loads(args.from_json.read_text())
        report.print_report(res, console)
        if args.markdown:
            args.markdown.write_text(report.markdown(res))
        return 0
    signal.signal(signal.SIGTERM, _raise_interrupt)
    if wrk_path() is None:
        console.print("[red]wrk not found[/red]: apt-get install -y wrk")
        return 2
    found = discover(
        args.litellm_bin,
        preflight(
            args.target_list, args.tenancy_store, args.pg_url, args.redis_url, args.litellm_bin
        ),
        args.baseline_src,
    )
    targets = {}
    for name in args.target_list:
        if found[name].missing:
            console.print(f"[yellow]skipping {name}[/yellow]: {found[name].missing}")
        else:
            targets[name] = found[name]
    gateways = [n for n in targets if n != "direct"]
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out_path = args.output or REPO / "bench-results" / f"gateway_overhead-{stamp}.json"
    run_dir = (out_path.parent / f"{out_path.stem}-logs").resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, targets, run_dir, console)
    res = bench.res
    res["meta"] = {
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": ".venv/bin/python "
        + shlex.join(["benchmarks/gateway_overhead.py", *(argv or sys.argv[1:])]),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "loadavg_start": loadavg(),
        "python": platform.python_version(),
        "litellm_version": litellm_version(args.litellm_bin)
        if {"litellm", "litellm-db"} & set(targets)
        else None,
        "litellm_metrics": not args.no_litellm_metrics,
        "taskset": args.taskset,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "levels": args.levels,
        "logs": str(run_dir),
        "skipped": {n: found[n].missing for n in args.target_list if found[n].missing},
        "checkout": git_info(REPO),
    }
    if args.baseline_src is not None:
        res["meta"]["baseline"] = {
            "src": str(args.baseline_src),
            **(git_info(args.baseline_src) or {}),
        }
    rc = 0
    try:
        console.print("[bold]starting servers[/bold]")
        upstream = bench.start_upstream()
        bench.servers["direct"] = upstream
        res.setdefault("commands", {})["upstream"] = shlex.join(upstream.argv)
        for g in list(gateways):
            try:
                bench.servers[g] = bench.start_gateway(g, upstream)
            except RuntimeError as exc:
                if g != "litellm-db":
                    raise
                # Preflight found nothing missing, yet it did not start: skip it, say why.
                res["meta"]["skipped"][g] = f"did not start: {str(exc)[-600:]}"
                console.print(f"[yellow]skipping {g}[/yellow]: did not start (see its log)")
                gateways.remove(g)
                del targets[g]
        names = list(targets)
        if "load" in args.phase_list:
            console.print("[bold]load[/bold] (wrk)")
            bench.load(names)
        if "stream" in args.phase_list:
            console.print("[bold]streaming first event[/bold]")
            bench.stream(names)
        res["rss_after_load_mib"] = {g: bench.servers[g].rss_mib() for g in gateways}
        bench.spend_live()
        for g in gateways:
            bench.group.stop(bench.servers.pop(g))
        if "slipstream" in targets and "workers" in args.phase_list:
            console.print("[bold]workers[/bold]")
            bench.workers(upstream)
        if "slipstream" in targets and "memory" in args.phase_list:
            console.print("[bold]memory soak[/bold]")
            bench.memory(upstream)
    except KeyboardInterrupt:
        res["notes"].append("interrupted: results are partial")
        rc = 130
    except Exception as exc:  # report what we have, then fail loudly
        res["notes"].append(f"failed: {exc}")
        console.print(f"[red]error:[/red] {exc}")
        rc = 1
    finally:
        bench.group.stop_all()
        if bench.dbs:
            console.print("[bold]spend ledger[/bold]")
            bench.spend_final()
    res["meta"]["loadavg_end"] = loadavg()
    bench.summarize(gateways)
    out_path.write_text(json.dumps(res, indent=2))
    report.print_report(res, console)
    md = report.markdown(res)
    if args.markdown:
        args.markdown.write_text(md)
    console.print(f"JSON: {out_path}   logs: {run_dir}")
    return rc


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
