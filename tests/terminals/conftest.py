"""Terminal test fixtures: a project, and a /ws client that keeps terminal output frames."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import pytest
import websockets

from collab.projects import store


class TermClient:
    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.output: dict[str, str] = {}
        self.exits: dict[str, Any] = {}
        self.errors: dict[str, Any] = {}
        self.frames = 0
        self._answers: dict[Any, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.conn:
            msg = json.loads(raw)
            if "terminal" in msg and "id" not in msg:
                self.frames += 1
                if "data" in msg:
                    self.output[msg["terminal"]] = (
                        self.output.get(msg["terminal"], "") + msg["data"]
                    )
                if "exit" in msg:
                    self.exits[msg["terminal"]] = msg["exit"]
                if "error" in msg:
                    self.errors[msg["terminal"]] = msg["error"]
            elif msg.get("id") in self._answers:
                self._answers.pop(msg["id"]).set_result(msg)

    async def call(self, name: str, args: dict[str, Any], timeout: float = 10) -> Any:
        msg_id = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._answers[msg_id] = fut
        await self.conn.send(json.dumps({"id": msg_id, "call": name, "args": args}))
        return await asyncio.wait_for(fut, timeout)

    async def wait_output(self, tid: str, needle: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while needle not in self.output.get(tid, ""):
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not in {self.output.get(tid, '')[-500:]!r}")
            await asyncio.sleep(0.02)
        return self.output[tid]


@contextlib.asynccontextmanager
async def term_client(server: Any, key: str) -> AsyncIterator[TermClient]:
    headers = {"Authorization": f"Bearer {key}"}
    async with websockets.connect(
        server.ws + "/ws", additional_headers=headers, max_size=None
    ) as conn:
        client = TermClient(conn)
        try:
            yield client
        finally:
            client._reader.cancel()


@pytest.fixture
async def project(server: Any, user: Any) -> UUID:
    settings = server.services.settings
    return await store.create_project(
        server.services.pool, settings.projects_dir, UUID(user.account_id), "p"
    )


@pytest.fixture
def settings(settings: Any) -> Any:
    # dash reads no rc file: the machine's ~/.bashrc (pyenv rehash locks and all) must
    # not decide whether a test's shell answers.
    return settings.replace(terminal_shell="/bin/sh")
