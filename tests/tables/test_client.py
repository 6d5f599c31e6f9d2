"""collab.client against the real server: calls, writes, and a changes() iterator that
resumes across a dropped connection without missing or repeating a change."""

from __future__ import annotations

import asyncio

import pytest

from collab.client import Client, ClientError
from tests.conftest import make_user
from tests.tables.conftest import db, insert_project


async def test_client_queries_sets_deletes_and_calls(server, user):
    other = await make_user(server)
    async with Client(server.ws, user.key) as c:
        assert await c.call("ping") == "pong"
        pid = (await c.set("projects", {"title": "from a program"}))["project_id"]
        rows = await c.get("projects", {"project_id": None, "title": None})
        assert rows == [{"project_id": pid, "title": "from a program"}]
        await c.set("project_users", {"project_id": pid, "account_id": other.account_id})
        await c.delete("project_users", {"project_id": pid, "account_id": other.account_id})
        with pytest.raises(ClientError) as err:
            await c.get("nope", {"x": None})
        assert err.value.code == "unknown_table"


async def test_changes_iterator_resumes_after_a_dropped_connection(server, user):
    conn = await db(server)
    try:
        async with Client(server.ws, user.key, reconnect_delay=0.05) as c:
            events = c.changes({"projects": [{"project_id": None, "title": None}]})
            first = await anext(events)
            assert first == {"action": "initial", "rows": []}
            a = await insert_project(conn, user.account_id, "a")
            assert (await anext(events))["new_val"]["project_id"] == a
            generation = c.generation
            await c._ws.close()  # the network drops
            missed = [await insert_project(conn, user.account_id, f"m{i}") for i in range(3)]
            got = [await asyncio.wait_for(anext(events), 10) for _ in missed]
            assert [e["new_val"]["project_id"] for e in got] == missed
            assert c.generation > generation
            last = await insert_project(conn, user.account_id, "last")
            assert (await asyncio.wait_for(anext(events), 10))["new_val"]["project_id"] == last
            await events.aclose()
    finally:
        await conn.close()
