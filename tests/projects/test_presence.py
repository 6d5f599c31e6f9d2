"""Project presence: a member with a document of the project open (/yjs) or the project
page open (/ws presence.join) is online for the other members' `project_presence` feeds;
closing takes them offline; non-members see nothing; a removed member's open feed stops
receiving; a process that stops heartbeating loses its rows."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from uuid import UUID

import pytest

from collab.config import Settings
from tests.conftest import make_user, ws_connect
from tests.projects.conftest import new_project
from tests.sync.processes import ServerProcess, free_port
from tests.sync.yclient import connect
from tests.tables.conftest import FeedReader, remove_member


@pytest.fixture
def settings(tmp_path, db_url) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        secret="test-secret",
        presence_heartbeat_seconds=1,
        presence_expiry_seconds=3,
    )


def query(project: UUID | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"project_id": None, "account_id": None, "paths": None}
    if project is not None:
        row["project_id"] = str(project)
    return {"project_presence": [row]}


def online(event: dict[str, Any], account_id: str) -> bool:
    new = event.get("new_val")
    return new is not None and new["account_id"] == account_id


def offline(event: dict[str, Any], account_id: str) -> bool:
    old = event.get("old_val")
    return event.get("new_val") is None and old is not None and old["account_id"] == account_id


async def test_opening_a_document_puts_the_member_online_and_closing_takes_them_off(
    server, user
) -> None:
    grace = await make_user(server, name="Grace")
    project = await new_project(server, user, grace)
    async with ws_connect(server, user.key) as ws:
        feed = FeedReader(ws)
        first = await feed.subscribe(query(project))
        assert first["result"]["project_presence"] == []
        async with connect(server, project, "notes.md", grace.key) as doc:
            await asyncio.wait_for(doc.synced.wait(), 20)
            got = await feed.until(lambda e: online(e, grace.account_id))
            assert got[-1]["new_val"]["paths"] == ["notes.md"]
            assert got[-1]["new_val"]["project_id"] == str(project)
            async with connect(server, project, "b.py", grace.key) as other:
                await asyncio.wait_for(other.synced.wait(), 20)
                got = await feed.until(
                    lambda e: (e.get("new_val") or {}).get("paths") == ["b.py", "notes.md"]
                )
            await feed.until(lambda e: (e.get("new_val") or {}).get("paths") == ["notes.md"])
        await feed.until(lambda e: offline(e, grace.account_id))
        # A fresh query agrees: nobody is online.
        again = FeedReader(ws)
        assert (await again.subscribe(query(project)))["result"]["project_presence"] == []


async def test_a_non_member_sees_no_presence(server, user) -> None:
    stranger = await make_user(server, name="Stranger")
    project = await new_project(server, user)
    async with ws_connect(server, stranger.key) as ws:
        feed = FeedReader(ws)
        first = await feed.subscribe(query())
        assert first["result"]["project_presence"] == []
        async with connect(server, project, "notes.md", user.key) as doc:
            await asyncio.wait_for(doc.synced.wait(), 20)
            await server.services.extra["presence"].settled()
            assert (
                await server.services.pool.fetchval(
                    "SELECT count(*) FROM project_presence WHERE project_id = $1", project
                )
                == 1
            )
            assert await feed.quiet(1.5) == []
        # Nor may it join a project's page.
        answer = await ws.request({"call": "presence.join", "args": {"project_id": str(project)}})
        assert answer["error"]["code"] == "forbidden"


async def test_a_removed_member_stops_receiving_on_an_open_feed(server, user) -> None:
    grace = await make_user(server, name="Grace")
    project = await new_project(server, user, grace)
    async with ws_connect(server, grace.key) as grace_ws, ws_connect(server, user.key) as owner_ws:
        feed = FeedReader(grace_ws)
        await feed.subscribe(query())
        async with connect(server, project, "a.md", user.key) as doc:
            await asyncio.wait_for(doc.synced.wait(), 20)
            await feed.until(lambda e: online(e, user.account_id))
            assert "result" in await remove_member(owner_ws, str(project), grace.account_id)
            # Whatever the removal itself sends, nothing after it: the owner's next
            # document does not reach Grace.
            await feed.quiet(1.0)
            async with connect(server, project, "b.md", user.key) as other:
                await asyncio.wait_for(other.synced.wait(), 20)
                await server.services.extra["presence"].settled()
                assert await feed.quiet(1.5) == []


async def test_the_project_page_counts_until_the_connection_closes(server, user) -> None:
    grace = await make_user(server, name="Grace")
    project = await new_project(server, user, grace)
    async with ws_connect(server, user.key) as ws:
        feed = FeedReader(ws)
        await feed.subscribe(query(project))
        async with ws_connect(server, grace.key) as grace_ws:
            answer = await grace_ws.request(
                {"call": "presence.join", "args": {"project_id": str(project)}}
            )
            assert answer["result"] == {"joined": str(project)}
            got = await feed.until(lambda e: online(e, grace.account_id))
            assert got[-1]["new_val"]["paths"] == []
            await grace_ws.request({"call": "presence.leave", "args": {"project_id": str(project)}})
            await feed.until(lambda e: offline(e, grace.account_id))
            await grace_ws.request({"call": "presence.join", "args": {"project_id": str(project)}})
            await feed.until(lambda e: online(e, grace.account_id))
        await feed.until(lambda e: offline(e, grace.account_id))


async def test_a_process_that_stops_heartbeating_loses_its_rows(server, user) -> None:
    """A crashed process: its heartbeat row goes stale, and a live process deletes it
    with every presence row that process wrote."""
    grace = await make_user(server, name="Grace")
    project = await new_project(server, user, grace)
    pool = server.services.pool
    dead = uuid.uuid4()
    await pool.execute(
        "INSERT INTO presence_processes (process_id, last_seen) VALUES ($1, now())", dead
    )
    async with ws_connect(server, user.key) as ws:
        feed = FeedReader(ws)
        await feed.subscribe(query(project))
        await pool.execute(
            """INSERT INTO project_presence (project_id, account_id, process_id, paths)
               VALUES ($1, $2, $3, '["x.md"]')""",
            project,
            UUID(grace.account_id),
            dead,
        )
        await feed.until(lambda e: online(e, grace.account_id))
        # No heartbeat from `dead` any more: within the expiry (3 s) plus a beat it goes.
        await feed.until(lambda e: offline(e, grace.account_id), timeout=30)
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM presence_processes WHERE process_id = $1", dead
            )
            == 0
        )


async def test_presence_through_another_process_and_its_crash(
    server, user, settings, tmp_path
) -> None:
    """Grace is connected through a second, real, server process: Ada's feed on the first
    sees her online; the second process is killed (-9, no clean-up), and the first one
    expires its rows, so she goes offline without anyone closing anything."""
    grace = await make_user(server, name="Grace")
    project = await new_project(server, user, grace)
    other = ServerProcess(
        settings.data_dir,
        settings.database_url,
        free_port(),
        tmp_path / "b.log",
        env={"COLLAB_PRESENCE_HEARTBEAT_SECONDS": "1", "COLLAB_PRESENCE_EXPIRY_SECONDS": "3"},
    )
    await other.start()
    try:
        async with ws_connect(server, user.key) as ws:
            feed = FeedReader(ws)
            await feed.subscribe(query(project))
            mine = str(server.services.extra["presence"].process_id)
            async with connect(other, project, "far.md", grace.key) as doc:
                await asyncio.wait_for(doc.synced.wait(), 20)
                got = await feed.until(lambda e: online(e, grace.account_id))
                row = got[-1]["new_val"]
                assert row["paths"] == ["far.md"]
                process = await server.services.pool.fetchval(
                    "SELECT process_id FROM project_presence WHERE account_id = $1",
                    UUID(grace.account_id),
                )
                assert str(process) != mine
                await asyncio.to_thread(other.kill9)
                await feed.until(lambda e: offline(e, grace.account_id), timeout=30)
    finally:
        await asyncio.to_thread(other.stop)
