"""The processes a gateway benchmark starts: each in its own session, logged, always stopped.

Every server runs in a new process group so `stop()` reaches its workers and children too;
`ProcessGroup` stops everything it started in reverse order from a `finally`, so a failed
phase, an exception or Ctrl-C never leaves a server behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil


def free_port() -> int:
    """A TCP port nobody listens on now (never 8000: other engineers' servers live there)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port != 8000:
            return port


class Server:
    """One started server: its command, port, log file and process group."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        port: int,
        log_dir: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name, self.argv, self.port = name, argv, port
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait_ready(self, probe: Callable[[httpx.Client, str], bool], timeout_s: float) -> float:
        """Poll `probe` until it returns True; returns the seconds it took."""
        t0 = time.monotonic()
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() - t0 < timeout_s:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                    )
                try:
                    if probe(client, self.url):
                        return time.monotonic() - t0
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
        raise RuntimeError(
            f"{self.name} not ready after {timeout_s:.0f}s: {' '.join(self.argv)}\n{self.log_tail()}"
        )

    def rss_mib(self) -> dict[str, float]:
        """RSS of the main process, and of it plus all descendants (workers), in MiB."""
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return {"main": 0.0, "tree": 0.0}
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        main = root.memory_info().rss
        return {"main": round(main / 2**20, 1), "tree": round(total / 2**20, 1)}

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the process and its descendants."""
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system
        return total

    def pids(self) -> list[int]:
        try:
            root = psutil.Process(self.proc.pid)
            return [root.pid, *(c.pid for c in root.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

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
        else:  # the leader is gone; reap any stragglers left in its group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()


class ProcessGroup:
    """Every server of a run; `stop_all()` (from a finally) stops them newest first."""

    def __init__(self, log_dir: Path, taskset: str | None = None) -> None:
        self.log_dir, self.taskset = log_dir, taskset
        self.servers: list[Server] = []

    def start(
        self,
        name: str,
        argv: list[str],
        port: int,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Server:
        if self.taskset:
            argv = ["taskset", "-c", self.taskset, *argv]
        server = Server(name, argv, port, self.log_dir, env, cwd)
        self.servers.append(server)
        return server

    def stop(self, server: Server) -> None:
        server.stop()
        if server in self.servers:
            self.servers.remove(server)

    def stop_all(self) -> None:
        while self.servers:
            self.servers.pop().stop()
