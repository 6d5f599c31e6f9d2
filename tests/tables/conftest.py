"""Helpers for the tables tests: feeds read off a raw /ws client, direct SQL writers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg

from tests.conftest import Served, WsClient


async def create_project(ws: WsClient, title: str = "p") -> str:
    answer = await ws.request({"query": {"projects": {"title": title}}})
    assert "result" in answer, answer
    return str(answer["result"]["projects"]["project_id"])


async def add_member(ws: WsClient, project_id: str, account_id: str) -> Any:
    return await ws.request(
        {"query": {"project_users": {"project_id": project_id, "account_id": account_id}}}
    )


async def remove_member(ws: WsClient, project_id: str, account_id: str) -> Any:
    return await ws.request(
        {
            "query": {"project_users": {"project_id": project_id, "account_id": account_id}},
            "options": {"delete": True},
        }
    )


class FeedReader:
    """One feed's events, read off a WsClient that several FeedReaders may share: frames
    for other feeds are kept in the buffers of the socket's other feeds."""

    def __init__(self, ws: WsClient) -> None:
        self.ws = ws
        self.feed_id: str | None = None
        if not hasattr(ws, "feed_buffers"):
            ws.feed_buffers = {}  # type: ignore[attr-defined]
        self.buffers: dict[str, list[dict[str, Any]]] = ws.feed_buffers  # type: ignore[attr-defined]

    async def subscribe(self, query: dict[str, Any], **extra: Any) -> dict[str, Any]:
        msg_id = next(self.ws._ids)
        await self.ws.conn.send(
            json.dumps({"id": msg_id, "query": query, "changes": True, **extra})
        )
        while True:
            frame = await self.ws.recv(30)
            if frame.get("id") == msg_id:
                if "feed" in frame:
                    self.feed_id = frame["feed"]
                    self.buffers.setdefault(frame["feed"], [])
                return dict(frame)
            self._route(frame)

    def _route(self, frame: dict[str, Any]) -> None:
        if "feed" in frame and "id" not in frame:
            self.buffers.setdefault(frame["feed"], []).append(frame)

    async def next(self, timeout: float = 10) -> dict[str, Any]:
        assert self.feed_id is not None
        mine = self.buffers[self.feed_id]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not mine:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError
            self._route(await self.ws.recv(left))
        return mine.pop(0)

    async def quiet(self, seconds: float = 0.5) -> list[dict[str, Any]]:
        """Every event that arrives until `seconds` pass with no event for this feed."""
        got: list[dict[str, Any]] = []
        while True:
            try:
                got.append(await self.next(seconds))
            except TimeoutError:
                return got

    async def until(self, predicate: Any, timeout: float = 20) -> list[dict[str, Any]]:
        """Events up to and including the first one that satisfies `predicate`."""
        got: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = await self.next(max(0.1, deadline - loop.time()))
            got.append(event)
            if predicate(event):
                return got


async def db(served: Served) -> asyncpg.Connection:
    return await asyncpg.connect(served.services.database_url)


async def insert_project(conn: asyncpg.Connection, owner: str, title: str) -> str:
    """A server-side write: a project and its owner in one transaction."""
    async with conn.transaction():
        pid = await conn.fetchval(
            "INSERT INTO projects (title) VALUES ($1) RETURNING project_id", title
        )
        await conn.execute(
            "INSERT INTO project_users (project_id, account_id, role) VALUES ($1, $2, 'owner')",
            pid,
            owner,
        )
    return str(pid)
