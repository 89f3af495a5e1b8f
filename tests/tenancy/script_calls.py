"""Counting the admission scripts' calls from outside: a TCP proxy in front of the test Redis
that reads the commands going through it (whatever client sent them) and counts the EVALSHAs
of the admission scripts: admissions (ADMIT taking a request), lease top-ups (ADMIT taking
nothing) and pushes (PUSH)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import hiredis
import redis as sync_redis
import redis.asyncio as aioredis

from slipstream.tenancy.shared.scripts import ADMIT, PUSH, SEED

from .conftest import REDIS_URL

REDIS_PORT = 6379


class ScriptCalls:
    def __init__(self) -> None:
        self.admits = self.top_ups = self.pushes = 0
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    @classmethod
    async def start(cls) -> ScriptCalls:
        # Loaded up front, so no call meets NOSCRIPT and is sent (and counted) twice.
        r = sync_redis.Redis.from_url(REDIS_URL)
        for script in (ADMIT, PUSH, SEED):
            r.script_load(script.text)
        r.close()
        calls = cls()
        calls._server = await asyncio.start_server(calls._accept, "127.0.0.1", 0)
        calls.port = calls._server.sockets[0].getsockname()[1]
        return calls

    def client(self, **kwargs: Any) -> aioredis.Redis:
        """A client of the test Redis whose commands go through this proxy."""
        return aioredis.from_url(f"redis://127.0.0.1:{self.port}/0", **kwargs)

    @property
    def total(self) -> int:
        return self.admits + self.top_ups + self.pushes

    def _count(self, command: list[bytes]) -> None:
        if command[0].upper() != b"EVALSHA":
            return
        sha = command[1].decode()
        if sha == ADMIT.sha:
            argv = command[3 + int(command[2]) :]
            if argv[4] == b"1":  # ARGV[5]: take (admit the request) or only top leases up
                self.admits += 1
            else:
                self.top_ups += 1
        elif sha == PUSH.sha:
            self.pushes += 1

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", REDIS_PORT)
        self._writers += [writer, up_writer]
        for task in (
            self._pipe(reader, up_writer, hiredis.Reader()),
            self._pipe(up_reader, writer, None),
        ):
            t = asyncio.get_running_loop().create_task(task)
            self._pumps.add(t)
            t.add_done_callback(self._pumps.discard)

    async def _pipe(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        commands: hiredis.Reader | None,
    ) -> None:
        """Copy one direction; client-to-server bytes are parsed (RESP) and counted first."""
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                if commands is not None:
                    commands.feed(data)
                    while (command := commands.gets()) is not False:
                        self._count(command)
                dst.write(data)
                await dst.drain()
        dst.close()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in self._writers:
            w.close()
        for t in list(self._pumps):
            t.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
