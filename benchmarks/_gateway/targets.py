"""The paths under test and how each is configured, started and probed.

  direct              the minimal upstream itself (the floor every gateway is measured against)
  slipstream          `slipstream serve --config slipstream.yaml`: one model → one `openai`
                      deployment at the upstream; routing (weighted) and Prometheus metrics on,
                      as by default; tenancy off (no master key, no database)
  slipstream-tenancy  the same plus `master_key`, `database_url` (PostgreSQL, or SQLite with
                      --tenancy-store sqlite) and `redis_url`: keys, limits, budgets and the spend
                      ledger on; clients send a virtual key (see tenancy.py)
  litellm             `litellm --config litellm.yaml --num_workers 1`: the same model list, master
                      key set, Prometheus callback on, no database, no Redis
  litellm-db          the same with `database_url` (PostgreSQL): LiteLLM's spend logging
  lean                (optional) lean_proxy.py, a bare pass-through: the floor for any Python gateway
  baseline            (with --baseline-src DIR) `slipstream` again, the same `.venv/bin/slipstream`
                      and config, but with `PYTHONPATH=DIR`: it runs another checkout's code (a
                      git worktree's `src/`, e.g. the commit before a change); checked up front
                      (`import slipstream` must resolve under DIR) and recorded in the JSON
  baseline-tenancy    `slipstream-tenancy` likewise, with its own database and virtual key

All answer the same chat-completion body at `/v1/chat/completions`; only the Authorization
header differs (LiteLLM requires its master key, the tenancy targets a virtual key; Slipstream
without tenancy and the upstream ignore it).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from _gateway.names import BASELINE, is_baseline, is_slipstream, is_tenancy
from _gateway.tenancy import INPUT_PER_MTOK, OUTPUT_PER_MTOK

__all__ = ["is_baseline", "is_slipstream", "is_tenancy"]  # re-exported: phases.py imports them

REPO = Path(__file__).resolve().parents[2]
SLIPSTREAM_BIN = REPO / ".venv" / "bin" / "slipstream"
VENV_PYTHON = REPO / ".venv" / "bin" / "python"  # the interpreter SLIPSTREAM_BIN runs on
IMPORT_CHECK = "import slipstream; print(slipstream.__file__)"
LITELLM_BIN = Path("/tmp/litellm-venv/bin/litellm")
UPSTREAM_SCRIPT = Path(__file__).resolve().parent / "upstream.py"
LEAN_SCRIPT = Path(__file__).resolve().parent / "lean_proxy.py"
PUBLIC_MODEL = "chat"
UPSTREAM_MODEL = "upstream-model"
UPSTREAM_KEY = "sk-upstream-bench"  # reaches the upstream, which ignores it
LITELLM_MASTER_KEY = "sk-litellm-bench"
CHAT_PATH = "/v1/chat/completions"
MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]


def chat_body(stream: bool) -> bytes:
    body: dict[str, object] = {"model": PUBLIC_MODEL, "messages": MESSAGES, "max_tokens": 16}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


@dataclass(frozen=True)
class Target:
    """How to start one path (None for direct) and what its clients must send."""

    name: str
    headers: dict[str, str] = field(default_factory=dict)
    missing: str | None = None  # why it cannot run here, if it cannot
    workers_flag: bool = False  # whether `--workers N` is accepted
    env: dict[str, str] = field(default_factory=dict)  # added to its server's environment


def upstream_argv(port: int) -> list[str]:
    return [sys.executable, str(UPSTREAM_SCRIPT), "--port", str(port)]


def lean_argv(port: int, upstream_port: int) -> list[str]:
    upstream = f"http://127.0.0.1:{upstream_port}"
    return [sys.executable, str(LEAN_SCRIPT), "--port", str(port), "--upstream", upstream]


def slipstream_yaml(upstream_port: int, tenancy: dict[str, str] | None = None) -> str:
    """The gateway's config; `tenancy` adds master_key/database_url/redis_url lines."""
    top = "".join(f"{k}: {v}\n" for k, v in (tenancy or {}).items())
    return f"""# written by benchmarks/gateway_overhead.py
{top}models:
  - name: {PUBLIC_MODEL}
    routing:
      strategy: weighted
    deployments:
      - provider: openai
        model: {UPSTREAM_MODEL}
        api_base: http://127.0.0.1:{upstream_port}/v1
        api_key: env:BENCH_UPSTREAM_KEY
        prices: {{input_per_mtok: {INPUT_PER_MTOK}, output_per_mtok: {OUTPUT_PER_MTOK}}}
"""


def slipstream_argv(config: Path, port: int, workers: int = 1) -> list[str]:
    argv = [str(SLIPSTREAM_BIN), "serve", "--config", str(config), "--port", str(port)]
    if workers > 1:
        argv += ["--workers", str(workers)]
    return [*argv, "--log-level", "warning"]


def litellm_yaml(upstream_port: int, metrics: bool, database: bool = False) -> str:
    """LiteLLM's config; `database` adds `database_url` (from DATABASE_URL) and a price."""
    callbacks = '  callbacks: ["prometheus"]\n' if metrics else ""
    prices = (
        f"      input_cost_per_token: {INPUT_PER_MTOK / 1e6:.10f}\n"
        f"      output_cost_per_token: {OUTPUT_PER_MTOK / 1e6:.10f}\n"
        if database
        else ""
    )
    db = "  database_url: os.environ/DATABASE_URL\n" if database else ""
    return f"""# written by benchmarks/gateway_overhead.py
model_list:
  - model_name: {PUBLIC_MODEL}
    litellm_params:
      model: openai/{UPSTREAM_MODEL}
      api_base: http://127.0.0.1:{upstream_port}/v1
      api_key: os.environ/BENCH_UPSTREAM_KEY
{prices}router_settings:
  routing_strategy: simple-shuffle
litellm_settings:
{callbacks}  set_verbose: false
general_settings:
  master_key: {LITELLM_MASTER_KEY}
{db}"""


def litellm_argv(config: Path, port: int) -> list[str]:
    return [
        str(LITELLM_BIN),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]


def chat_probe(headers: dict[str, str]) -> Callable[[httpx.Client, str], bool]:
    """A readiness probe: one real chat completion must come back 200 with the answer."""

    def probe(client: httpx.Client, url: str) -> bool:
        r = client.post(
            url + CHAT_PATH,
            content=chat_body(False),
            headers={"content-type": "application/json", **headers},
        )
        return r.status_code == 200 and "Paris" in r.text

    return probe


def slipstream_help(env: dict[str, str] | None = None) -> tuple[str | None, bool]:
    """Why `slipstream serve --config` cannot run with `env` added (None: it can), and
    whether `--workers` is accepted."""
    if not SLIPSTREAM_BIN.exists():
        return f"{SLIPSTREAM_BIN} not found (pip install -e . into .venv)", False
    r = subprocess.run(
        [str(SLIPSTREAM_BIN), "serve", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", **(env or {})},
    )
    if "--config" not in r.stdout:
        tail = r.stderr.strip()[-300:]
        return "`slipstream serve --config` is not available in this checkout" + (
            f" yet ({tail})" if tail else " yet"
        ), False
    return None, "--workers" in r.stdout


def import_check(env: dict[str, str] | None = None) -> tuple[str, str]:
    """Where `import slipstream` resolves with `env` added to the environment, as the server
    started with that env imports it: (the command as a shell line, the file or an error)."""
    argv = [str(VENV_PYTHON), "-c", IMPORT_CHECK]
    r = subprocess.run(
        argv, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120
    )
    line = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    found = r.stdout.strip() or f"error: {r.stderr.strip()[-300:]}"
    return (f"{line} " if line else "") + shlex.join(argv), found


def baseline_missing(src: Path) -> str | None:
    """Why the --baseline-src code cannot be run (None: `import slipstream` resolves under it)."""
    if not (src / "slipstream" / "__init__.py").is_file():
        return f"{src}/slipstream/__init__.py not found (--baseline-src wants a checkout's src/)"
    _, found = import_check({"PYTHONPATH": str(src)})
    if not Path(found).resolve().is_relative_to(src):
        return f"with PYTHONPATH={src}, `import slipstream` still resolves to {found}"
    return None


def discover(
    litellm_bin: Path = LITELLM_BIN,
    preflight: dict[str, str] | None = None,
    baseline_src: Path | None = None,
) -> dict[str, Target]:
    """The targets, each with the reason it cannot run here (if any).

    `preflight`: reasons found by `tenancy.preflight()` for the database targets (it checks
    only the targets asked for: it connects to PostgreSQL and Redis and looks for files).
    `baseline_src`: the other checkout's `src/` the baseline targets run (absolute)."""
    pre = preflight or {}
    slip_missing, workers = slipstream_help()
    lite_missing = None
    if not litellm_bin.exists():
        lite_missing = (
            f"{litellm_bin} not found (python3 -m venv /tmp/litellm-venv && "
            "/tmp/litellm-venv/bin/pip install 'litellm[proxy]' prometheus_client)"
        )
    lite_auth = {"Authorization": f"Bearer {LITELLM_MASTER_KEY}"}
    found = {
        "direct": Target("direct"),
        "slipstream": Target("slipstream", missing=slip_missing, workers_flag=workers),
        # Its Authorization header (a virtual key) is made after the server starts.
        "slipstream-tenancy": Target(
            "slipstream-tenancy", missing=slip_missing or pre.get("slipstream-tenancy")
        ),
        "litellm": Target("litellm", lite_auth, lite_missing),
        "litellm-db": Target("litellm-db", lite_auth, lite_missing or pre.get("litellm-db")),
        "lean": Target("lean"),
    }
    base_missing, base_workers, env = "needs --baseline-src DIR", False, {}
    if baseline_src is not None:
        env = {"PYTHONPATH": str(baseline_src)}
        base_missing = baseline_missing(baseline_src)
        if base_missing is None:
            base_missing, base_workers = slipstream_help(env)
            if base_missing:
                base_missing = f"with PYTHONPATH={baseline_src}: {base_missing}"
    for name in BASELINE:
        found[name] = Target(
            name,
            missing=base_missing or pre.get(name),
            workers_flag=base_workers and name == "baseline",
            env=env,
        )
    return found


def litellm_version(litellm_bin: Path = LITELLM_BIN) -> str | None:
    python = litellm_bin.parent / "python"
    r = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
    )
    return r.stdout.strip() or None
