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
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from _gateway import profile
from _gateway.first_byte import measure_first_byte
from _gateway.processes import ProcessGroup, Server, free_port
from _gateway.spend import SpendCheck
from _gateway.summary import summarize
from _gateway.targets import (
    CHAT_PATH,
    UPSTREAM_KEY,
    Target,
    chat_body,
    chat_probe,
    import_check,
    is_baseline,
    is_slipstream,
    is_tenancy,
    lean_argv,
    litellm_argv,
    litellm_yaml,
    slipstream_argv,
    slipstream_yaml,
    upstream_argv,
)
from _gateway.tenancy import BENCH_MASTER_KEY, BenchDB, admin_probe, create_bench_key
from _gateway.wrk_load import LoadResult, run_wrk, write_script

STREAM_WARMUP = 50  # streamed requests per target before the timed ones


class Bench(SpendCheck):
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
        # What clients send; slipstream-tenancy's virtual key is added once its server is up.
        self.headers = {name: dict(t.headers) for name, t in targets.items()}
        self.scripts = {
            name: write_script(run_dir, name, chat_body(False), self.headers[name])
            for name in targets
        }
        self.sent: Counter[str] = Counter()  # answered requests per target (probe, warm-up, runs)
        self.dbs: dict[str, BenchDB] = {}  # the databases made for this run
        self.keys: dict[str, dict[str, str]] = {}  # the bench key (and its team) per target
        self.ready: set[str] = set()
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
        probe = chat_probe(self.headers[name])
        cfg = self.run_dir / f"{name}.yaml"
        if name == "lean":
            argv = lean_argv(port, upstream.port)
        elif is_slipstream(name):
            env |= self.targets[name].env  # baseline*: PYTHONPATH=--baseline-src
            self._check_import(name, label, env)
            tenancy = self._tenancy_config(env, name) if is_tenancy(name) else None
            cfg.write_text(slipstream_yaml(upstream.port, tenancy))
            argv = slipstream_argv(cfg, port, workers)
            probe = admin_probe if tenancy else probe  # no key for a chat completion yet
        else:
            if name == "litellm-db":
                self.dbs[name] = BenchDB.postgres(self.args.pg_url, "litellm_bench")
                env["DATABASE_URL"] = self.dbs[name].url
            metrics = not self.args.no_litellm_metrics
            cfg.write_text(litellm_yaml(upstream.port, metrics, database=name == "litellm-db"))
            argv = litellm_argv(cfg, port)
            argv[0] = str(self.args.litellm_bin)
        # LiteLLM reads config-relative files and writes caches in its cwd: give it run_dir.
        server = self.group.start(label, argv, port, env=env, cwd=self.run_dir)
        try:
            took = server.wait_ready(probe, self.args.startup_timeout)
            if is_tenancy(name):
                self._make_key(name, server)
        except Exception:
            self.group.stop(server)
            raise
        self.sent[name] += 1
        self.ready.add(name)
        self.console.print(f"  {label} ready on :{port} after {took:.1f}s")
        self.res.setdefault("commands", {})[label] = shlex.join(argv)
        # Warm up (imports, connection pools, first-request caches) before anything is timed.
        warm = run_wrk(
            server.url + CHAT_PATH,
            self.scripts[name],
            8,
            1 if self.args.quick else 2,
            taskset=self.args.taskset,
        )
        self.sent[name] += warm.requests
        if warm.errors:
            self.res["notes"].append(f"{label}: {warm.errors} errors during warm-up")
        return server

    def _check_import(self, name: str, label: str, env: dict[str, str]) -> None:
        """Where `import slipstream` resolves with the server's environment, recorded in the
        JSON (commands and notes); a baseline target must run the --baseline-src code."""
        cmd, found = import_check({k: v for k, v in env.items() if k == "PYTHONPATH"})
        self.res.setdefault("commands", {})[f"{label} import check"] = cmd
        self.res.setdefault("imports", {})[label] = found
        self.res["notes"].append(f"{label}: `import slipstream` -> {found}")
        src = self.args.baseline_src
        if is_baseline(name) and not Path(found).resolve().is_relative_to(src):
            raise RuntimeError(f"{label}: imports {found}, not the code under {src}")
        if not is_baseline(name) and src and Path(found).resolve().is_relative_to(src):
            raise RuntimeError(f"{label}: imports the baseline's code ({found})")

    def _tenancy_config(self, env: dict[str, str], name: str) -> dict[str, str]:
        """A fresh database (and Redis) for a tenancy target: its config's tenancy lines."""
        if self.args.tenancy_store == "postgres":
            prefix = "slipstream_bench" if name == "slipstream-tenancy" else "baseline_bench"
            db = BenchDB.postgres(self.args.pg_url, prefix)
            urls = {"database_url": db.url, "redis_url": self.args.redis_url}
        else:
            db = BenchDB.sqlite(self.run_dir / f"{name}.db")
            urls = {"database_url": db.url}
        self.dbs[name] = db
        meta = self.res.setdefault("meta", {})
        if name == "slipstream-tenancy" or "tenancy" not in meta:
            meta["tenancy"] = {"store": self.args.tenancy_store, **urls} | {
                "by_target": meta.get("tenancy", {}).get("by_target", {})
            }
        meta["tenancy"]["by_target"][name] = urls
        # Through the environment, as a deployment would (literal credentials are warned about).
        env["BENCH_MASTER_KEY"] = BENCH_MASTER_KEY
        env |= {f"BENCH_{k.upper()}": v for k, v in urls.items()}
        return {"master_key": "env:BENCH_MASTER_KEY"} | {k: f"env:BENCH_{k.upper()}" for k in urls}

    def _make_key(self, name: str, server: Server) -> None:
        """The bench key, through the admin API; from now on wrk and the streams send it."""
        info = create_bench_key(server.url)
        self.keys[name] = info
        self.headers[name] = {"Authorization": f"Bearer {info['key']}"}
        self.scripts[name] = write_script(self.run_dir, name, chat_body(False), self.headers[name])
        with httpx.Client(timeout=10.0) as client:
            if not chat_probe(self.headers[name])(client, server.url):
                raise RuntimeError(f"{name}: a chat completion with the bench key failed")
        self.console.print(f"  {name}: bench key {info['key_id']} (team {info['team_id']})")

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
                    self.sent[name] += res.requests
                    self.console.print(
                        f"  round {r + 1} c={c:<3} {name:<18} {res.rps:>9,.0f} req/s "
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
                self.headers[name],
                self.args.stream_requests,
                warmup=STREAM_WARMUP,
            )
            self.sent[name] += STREAM_WARMUP + fb.requests
            out[name] = fb.to_dict()
            self.console.print(
                f"  stream {name:<18} first event p50 {fb.first_event_p50_ms:.3f} ms "
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
        self.res["summary"] = summarize(self.res, self.args.levels, gateways)


def _median(rs: list[LoadResult]) -> dict[str, float]:
    return {
        "rps": round(statistics.median(r.rps for r in rs), 1),
        "p50_ms": round(statistics.median(r.p50_ms for r in rs), 3),
        "p99_ms": round(statistics.median(r.p99_ms for r in rs), 3),
        "requests": sum(r.requests for r in rs),
        "cpu_us_per_request": round(statistics.median(r.cpu_us_per_request or 0 for r in rs), 1),
    }
