"""The phases of one gateway_overhead.py run: start the servers, load, stream, workers, soak.

`Bench` holds what a run started and what it measured so far; `main()` in gateway_overhead.py
calls the phases in order and always stops the servers from a `finally`.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import statistics
import subprocess
from pathlib import Path
from typing import Any

from rich.console import Console

from _gateway import profile
from _gateway.first_byte import measure_first_byte
from _gateway.processes import ProcessGroup, Server, free_port
from _gateway.targets import (
    CHAT_PATH,
    UPSTREAM_KEY,
    Target,
    chat_body,
    chat_probe,
    lean_argv,
    litellm_argv,
    litellm_yaml,
    slipstream_argv,
    slipstream_yaml,
    upstream_argv,
)
from _gateway.wrk_load import LoadResult, run_wrk, write_script


class Bench:
    """One run: the servers it started, the wrk scripts, and the results as they come."""

    def __init__(
        self,
        args: argparse.Namespace,
        targets: dict[str, Target],
        run_dir: Path,
        console: Console,
    ) -> None:
        self.args, self.targets, self.run_dir = args, targets, run_dir
        self.console = console
        self.group = ProcessGroup(run_dir, args.taskset)
        self.servers: dict[str, Server] = {}
        self.scripts = {
            name: write_script(run_dir, name, chat_body(False), t.headers)
            for name, t in targets.items()
        }
        self.res: dict[str, Any] = {"notes": []}

    # -- servers ---------------------------------------------------------------------------

    def start_upstream(self) -> Server:
        port = free_port()
        server = self.group.start("upstream", upstream_argv(port), port)
        server.wait_ready(chat_probe({}), self.args.startup_timeout)
        return server

    def start_gateway(self, name: str, upstream: Server, workers: int = 1, tag: str = "") -> Server:
        port = free_port()
        # LITELLM_LOCAL_MODEL_COST_MAP: skip its start-up fetch of prices from GitHub (offline box).
        env = {"BENCH_UPSTREAM_KEY": UPSTREAM_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        label = f"{name}{tag}"
        if name == "lean":
            argv = lean_argv(port, upstream.port)
        elif name == "slipstream":
            cfg = self.run_dir / "slipstream.yaml"
            cfg.write_text(slipstream_yaml(upstream.port))
            argv = slipstream_argv(cfg, port, workers)
        else:
            cfg = self.run_dir / "litellm.yaml"
            cfg.write_text(litellm_yaml(upstream.port, not self.args.no_litellm_metrics))
            argv = litellm_argv(cfg, port)
            argv[0] = str(self.args.litellm_bin)
        # LiteLLM reads config-relative files and writes caches in its cwd: give it run_dir.
        server = self.group.start(label, argv, port, env=env, cwd=self.run_dir)
        took = server.wait_ready(chat_probe(self.targets[name].headers), self.args.startup_timeout)
        self.console.print(f"  {label} ready on :{port} after {took:.1f}s")
        self.res.setdefault("commands", {})[label] = shlex.join(argv)
        # Warm up (imports, connection pools, first-request caches) before anything is timed.
        run_wrk(
            server.url + CHAT_PATH,
            self.scripts[name],
            8,
            1 if self.args.quick else 2,
            taskset=self.args.taskset,
        )
        return server

    def wrk(self, name: str, connections: int, duration: float | None = None) -> LoadResult:
        """One wrk run, with the CPU time the server under test spent per request."""
        server = self.servers[name]
        cpu0 = server.cpu_seconds()
        res = run_wrk(
            server.url + CHAT_PATH,
            self.scripts[name],
            connections,
            duration or self.args.duration,
            taskset=self.args.taskset,
        )
        cpu = server.cpu_seconds() - cpu0
        per = round(cpu / res.requests * 1e6, 1) if res.requests else None
        return dataclasses.replace(res, cpu_us_per_request=per)

    # -- phases ----------------------------------------------------------------------------

    def load(self, names: list[str]) -> None:
        per: dict[str, dict[str, list[LoadResult]]] = {n: {} for n in names}
        for r in range(self.args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]  # rotate who goes first
            for c in self.args.levels:
                for name in order:
                    sampler = self._maybe_profile(name, r, c)
                    res = self.wrk(name, c)
                    if sampler is not None:
                        self._finish_profile(name, c, sampler)
                    per[name].setdefault(str(c), []).append(res)
                    self.console.print(
                        f"  round {r + 1} c={c:<3} {name:<11} {res.rps:>9,.0f} req/s "
                        f"p50 {res.p50_ms:.3f} ms p99 {res.p99_ms:.2f} ms  "
                        f"server CPU {res.cpu_us_per_request} µs/req"
                        + (f"  [red]{res.errors} errors[/red]" if res.errors else "")
                    )
        self.res["load"] = {
            n: {
                c: {"median": _median(rs), "rounds": [x.to_dict() for x in rs]}
                for c, rs in by_c.items()
            }
            for n, by_c in per.items()
        }

    def _maybe_profile(self, name: str, rnd: int, c: int) -> subprocess.Popen[bytes] | None:
        """py-spy on each gateway during the first round of the highest level (--py-spy)."""
        if not self.args.py_spy or name == "direct" or rnd or c != max(self.args.levels):
            return None
        out = self.run_dir / f"py-spy-{name}-c{c}.txt"
        sampler = profile.start(self.servers[name].proc.pid, self.args.duration - 1, out)
        if sampler is None:
            self.res["notes"].append("--py-spy: py-spy not found (.venv/bin/pip install py-spy)")
        return sampler

    def _finish_profile(self, name: str, c: int, sampler: subprocess.Popen[bytes]) -> None:
        out = self.run_dir / f"py-spy-{name}-c{c}.txt"
        try:
            sampler.wait(timeout=60)
        except subprocess.TimeoutExpired:
            sampler.kill()
        if out.exists():
            self.res.setdefault("profiles", {})[name] = {"file": str(out), **profile.summarize(out)}

    def stream(self, names: list[str]) -> None:
        body = chat_body(True)
        out = {}
        for name in names:
            server = self.servers[name]
            fb = measure_first_byte(
                "127.0.0.1",
                server.port,
                CHAT_PATH,
                body,
                self.targets[name].headers,
                self.args.stream_requests,
            )
            out[name] = fb.to_dict()
            self.console.print(
                f"  stream {name:<11} first event p50 {fb.first_event_p50_ms:.3f} ms "
                f"p99 {fb.first_event_p99_ms:.2f} ms ({fb.errors} errors)"
            )
        self.res["first_byte"] = out

    def workers(self, upstream: Server) -> None:
        c = max(self.args.levels)
        if not self.targets["slipstream"].workers_flag:
            self.res["workers"] = {
                "supported": False,
                "note": "`slipstream serve` has no --workers option in this checkout; "
                "multi-worker scaling was not measured.",
            }
            return
        results = {}
        for n in (1, self.args.workers):
            key = f"slipstream-w{n}"
            self.servers[key] = self.start_gateway("slipstream", upstream, n, f"-w{n}")
            self.scripts[key] = self.scripts["slipstream"]
            rs = [self.wrk(key, c) for _ in range(self.args.rounds)]
            results[str(n)] = _median(rs)
            self.console.print(f"  workers={n} c={c} {results[str(n)]['rps']:,.0f} req/s")
            self.group.stop(self.servers.pop(key))
        self.res["workers"] = {"supported": True, "concurrency": c, "results": results}

    def memory(self, upstream: Server) -> None:
        key = "slipstream-soak"
        server = self.start_gateway("slipstream", upstream, 1, "-soak")
        self.servers[key] = server
        self.scripts[key] = self.scripts["slipstream"]
        total = self.args.memory_requests
        checkpoints = sorted({min(10_000, total), total})
        rss = server.rss_mib()
        samples = [
            {
                "requests": 0,
                "rss_main_mib": rss["main"],
                "rss_tree_mib": rss["tree"],
                "note": "after start-up and warm-up",
            }
        ]
        served, rps = 0, 3000.0
        for goal in checkpoints:
            while served < goal:
                secs = min(10.0, max(1.0, (goal - served) / max(rps, 1.0)))
                res = self.wrk(key, 32, secs)
                served += res.requests
                rps = res.rps or rps
                if res.errors:
                    self.res["notes"].append(f"memory soak: {res.errors} errors in one wrk round")
            rss = server.rss_mib()
            samples.append(
                {"requests": served, "rss_main_mib": rss["main"], "rss_tree_mib": rss["tree"]}
            )
            self.console.print(f"  soak {served:>8,} requests  RSS {rss['main']:.1f} MiB")
        self.group.stop(self.servers.pop(key))
        self.res["memory"] = {"target": "slipstream", "concurrency": 32, "samples": samples}

    def summarize(self, gateways: list[str]) -> None:
        s: dict[str, Any] = {}
        load = self.res.get("load", {})
        if "1" in load.get("direct", {}):
            direct = load["direct"]["1"]["median"]["p50_ms"]
            added = {
                g: round(load[g]["1"]["median"]["p50_ms"] - direct, 3)
                for g in gateways
                if "1" in load.get(g, {})
            }
            if "slipstream" in added:
                added["slipstream_meets_target"] = added["slipstream"] <= 0.5
            s["added_p50_ms_c1"] = added
        top = str(max(self.args.levels))
        if top in load.get("slipstream", {}) and top in load.get("litellm", {}):
            lite = load["litellm"][top]["median"]["rps"]
            if lite:
                s["rps_ratio_c32"] = round(load["slipstream"][top]["median"]["rps"] / lite, 2)
                s["rps_ratio_concurrency"] = int(top)
        fb = self.res.get("first_byte", {})
        if "direct" in fb:
            d = fb["direct"]["first_event_p50_ms"]
            over = {g: round(fb[g]["first_event_p50_ms"] - d, 3) for g in gateways if g in fb}
            if "slipstream" in over:
                over["slipstream_meets_target"] = over["slipstream"] <= 1.0
            s["first_event_overhead_p50_ms"] = over
        self.res["summary"] = s


def _median(rs: list[LoadResult]) -> dict[str, float]:
    return {
        "rps": round(statistics.median(r.rps for r in rs), 1),
        "p50_ms": round(statistics.median(r.p50_ms for r in rs), 3),
        "p99_ms": round(statistics.median(r.p99_ms for r in rs), 3),
        "requests": sum(r.requests for r in rs),
        "cpu_us_per_request": round(statistics.median(r.cpu_us_per_request or 0 for r in rs), 1),
    }
