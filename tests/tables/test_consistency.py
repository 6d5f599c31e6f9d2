"""Exactly-once: the subscribe race, resume with concurrent writers and a late commit,
resume across a restart, a killed listener, two server processes, trimmed logs."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from typing import Any

import asyncpg

from tests.conftest import make_user, serve, ws_connect
from tests.tables.conftest import FeedReader, db, insert_project

PROJECTS = {"projects": [{"project_id": None, "title": None}]}


class Writers:
    """Four connections that insert projects for `owner` and retitle them until stopped."""

    def __init__(self, url: str, owner: str, count: int = 4) -> None:
        self.url = url
        self.owner = owner
        self.count = count
        self.created: list[str] = []
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.seq = itertools.count()

    async def _run(self, n: int) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            rng = random.Random(n)
            mine: list[str] = []
            while not self.stop.is_set():
                if not mine or rng.random() < 0.6:
                    pid = await insert_project(conn, self.owner, f"w{n}-{next(self.seq)}")
                    mine.append(pid)
                    self.created.append(pid)
                else:
                    await conn.execute(
                        "UPDATE projects SET title = $1 WHERE project_id = $2",
                        f"u{n}-{next(self.seq)}",
                        rng.choice(mine),
                    )
                await asyncio.sleep(0)
        finally:
            await conn.close()

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._run(n)) for n in range(self.count)]

    async def finish(self) -> str:
        """Stop, then commit a marker project: every earlier change precedes it."""
        self.stop.set()
        await asyncio.gather(*self.tasks)
        conn = await asyncpg.connect(self.url)
        try:
            return await insert_project(conn, self.owner, "marker")
        finally:
            await conn.close()


def apply(state: dict[str, str], events: list[dict[str, Any]]) -> dict[str, str]:
    for e in events:
        if e["action"] == "delete":
            state.pop(e["old_val"]["project_id"])
        else:
            state[e["new_val"]["project_id"]] = e["new_val"]["title"]
    return state


async def db_titles(served: Any, owner: str) -> dict[str, str]:
    rows = await served.services.pool.fetch(
        """SELECT p.project_id, p.title FROM projects p JOIN project_users u USING (project_id)
           WHERE u.account_id = $1""",
        owner,
    )
    return {str(r["project_id"]): r["title"] for r in rows}


def check_exactly_once(
    initial: list[dict[str, Any]], events: list[dict[str, Any]], created: set[str]
) -> None:
    inserted = [e["new_val"]["project_id"] for e in events if e["action"] == "insert"]
    assert len(inserted) == len(set(inserted)), "an insert arrived twice"
    initial_ids = {r["project_id"] for r in initial}
    assert not initial_ids & set(inserted), "a row was in the result and arrived as an insert"
    assert initial_ids | set(inserted) == created, "a change was in neither"
    cursors = [int(e["cursor"].split(":")[0]) for e in events]
    assert cursors == sorted(cursors)


async def test_subscribing_while_four_writers_commit_sees_every_change_exactly_once(server, user):
    writers = Writers(server.services.database_url, user.account_id)
    writers.start()
    feeds = []
    sockets = contextlib.AsyncExitStack()
    async with sockets:
        for _ in range(5):
            await asyncio.sleep(0.15)
            ws = await sockets.enter_async_context(ws_connect(server, user.key))
            reader = FeedReader(ws)
            answer = await reader.subscribe(PROJECTS)
            feeds.append((reader, answer["result"]["projects"]))
        await asyncio.sleep(0.2)
        marker = await writers.finish()
        final = await db_titles(server, user.account_id)
        created = {*writers.created, marker}
        for reader, initial in feeds:
            events = await reader.until(lambda e: e.get("new_val", {}).get("title") == "marker")
            check_exactly_once(initial, events, created)
            state = apply({r["project_id"]: r["title"] for r in initial}, events)
            assert state == final


async def test_resume_returns_every_missed_change_once_including_a_late_commit(server, user):
    late_conn = await db(server)
    late = late_conn.transaction()
    await late.start()
    # Takes its log ids now, commits after everything below.
    late_pid = await insert_project(late_conn, user.account_id, "late")
    writers = Writers(server.services.database_url, user.account_id)
    writers.start()
    await asyncio.sleep(0.2)
    async with ws_connect(server, user.key) as ws:
        reader = FeedReader(ws)
        answer = await reader.subscribe(PROJECTS)
        initial = answer["result"]["projects"]
        assert late_pid not in {r["project_id"] for r in initial}
        seen = [await reader.next() for _ in range(10)]
    cursor = seen[-1]["cursor"]
    await asyncio.sleep(0.3)
    await late.commit()
    await late_conn.close()
    await asyncio.sleep(0.2)
    marker = await writers.finish()
    async with ws_connect(server, user.key) as ws:
        reader = FeedReader(ws)
        answer = await reader.subscribe(PROJECTS, resume=cursor)
        assert answer["result"] == {"resumed": True}
        rest = await reader.until(lambda e: e.get("new_val", {}).get("title") == "marker")
        assert await reader.quiet(0.3) == []
    events = seen + rest
    assert late_pid in {e["new_val"]["project_id"] for e in rest if e["action"] == "insert"}
    check_exactly_once(initial, events, {*writers.created, marker, late_pid})
    state = apply({r["project_id"]: r["title"] for r in initial}, events)
    assert state == await db_titles(server, user.account_id)


async def test_resume_after_a_server_restart_returns_every_change_made_while_down(settings):
    async with serve(settings) as first:
        user = await make_user(first)
        async with ws_connect(first, user.key) as ws:
            reader = FeedReader(ws)
            answer = await reader.subscribe(PROJECTS)
            initial = answer["result"]["projects"]
            writers = Writers(settings.database_url, user.account_id)
            writers.start()
            late_conn = await asyncpg.connect(settings.database_url)
            late = late_conn.transaction()
            await late.start()
            late_pid = await insert_project(late_conn, user.account_id, "late")
            seen = [await reader.next() for _ in range(5)]
    # The server is down; the writers go on, and the late transaction commits.
    await asyncio.sleep(0.3)
    await late.commit()
    await late_conn.close()
    marker = await writers.finish()
    async with serve(settings) as second:
        async with ws_connect(second, user.key) as ws:
            reader = FeedReader(ws)
            answer = await reader.subscribe(PROJECTS, resume=seen[-1]["cursor"])
            assert answer["result"] == {"resumed": True}
            rest = await reader.until(lambda e: e.get("new_val", {}).get("title") == "marker")
            assert await reader.quiet(0.3) == []
        final = await db_titles(second, user.account_id)
    events = seen + rest
    check_exactly_once(initial, events, {*writers.created, marker, late_pid})
    assert apply({r["project_id"]: r["title"] for r in initial}, events) == final


async def test_killing_the_listener_connection_loses_no_change(server, user):
    tables = server.services.extra["tables"]
    old_pid = tables._listener.get_server_pid()
    async with ws_connect(server, user.key) as ws:
        reader = FeedReader(ws)
        await reader.subscribe(PROJECTS)
        conn = await db(server)
        try:
            first = await insert_project(conn, user.account_id, "before")
            assert (await reader.next())["new_val"]["project_id"] == first
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", old_pid)
            during = [await insert_project(conn, user.account_id, f"during-{i}") for i in range(5)]
            got = [await reader.next(20) for _ in during]
            assert [e["new_val"]["project_id"] for e in got] == during
            assert tables._listener.get_server_pid() != old_pid
            after = await insert_project(conn, user.account_id, "after")
            assert (await reader.next())["new_val"]["project_id"] == after
        finally:
            await conn.close()


async def test_a_write_through_one_server_process_reaches_a_feed_on_another(settings):
    async with serve(settings) as a, serve(settings) as b:
        user = await make_user(a)
        async with ws_connect(a, user.key) as wa, ws_connect(b, user.key) as wb:
            reader = FeedReader(wa)
            await reader.subscribe(PROJECTS)
            created = await wb.request({"query": {"projects": {"title": "via b"}}})
            pid = created["result"]["projects"]["project_id"]
            event = await reader.next()
            assert event["new_val"] == {"project_id": pid, "title": "via b"}
            # A cursor from one process resumes on the other.
            cursor = event["cursor"]
        await a.services.pool.execute(
            "UPDATE projects SET title = 'again' WHERE project_id = $1", pid
        )
        async with ws_connect(b, user.key) as wb:
            reader = FeedReader(wb)
            await reader.subscribe(PROJECTS, resume=cursor)
            event = await reader.next()
            assert (event["action"], event["new_val"]["title"]) == ("update", "again")


async def test_a_cursor_older_than_the_trimmed_log_is_refused_with_cursor_expired(settings):
    tight = settings.replace(tables_log_max_rows=0, tables_log_min_age=0)
    async with serve(tight) as server:
        user = await make_user(server)
        tables = server.services.extra["tables"]
        async with ws_connect(server, user.key) as ws, ws_connect(server, user.key) as writer:
            reader = FeedReader(ws)
            answer = await reader.subscribe(PROJECTS)
            cursor = answer["cursor"]
            await writer.request({"query": {"projects": {"title": "x"}}})
            await reader.next()
            await tables.wait_for_pos(await tables.current_pos())
            assert await tables.trim() > 0
            again = await reader.subscribe(PROJECTS, resume=cursor)
            assert again["error"]["code"] == "cursor_expired"
            assert await server.services.pool.fetchval("SELECT count(*) FROM table_changes") == 0


async def test_resume_replays_membership_changes_with_the_permissions_of_their_time(server, user):
    from tests.tables.conftest import add_member, create_project, remove_member

    bob = await make_user(server, name="Bob")
    async with ws_connect(server, user.key) as alice:
        x = await create_project(alice, "x")
        y = await create_project(alice, "y")
        async with ws_connect(server, bob.key) as ws:
            projects = FeedReader(ws)
            p_cursor = (await projects.subscribe(PROJECTS))["cursor"]
            collabs = FeedReader(ws)
            c_cursor = (
                await collabs.subscribe(
                    {"collaborators": [{"project_id": None, "account_id": None, "name": None}]}
                )
            )["cursor"]
        # While Bob is away: he joins x, x is renamed, he leaves x, x changes again
        # (he must not hear of it), he joins y, and renames himself.
        await add_member(alice, x, bob.account_id)
        await alice.request({"query": {"projects": {"project_id": x, "title": "x2"}}})
        await remove_member(alice, x, bob.account_id)
        await alice.request({"query": {"projects": {"project_id": x, "title": "secret"}}})
        await add_member(alice, y, bob.account_id)
        async with ws_connect(server, bob.key) as ws:
            await ws.request({"query": {"accounts": {"account_id": bob.account_id, "name": "Rob"}}})
            projects = FeedReader(ws)
            assert (await projects.subscribe(PROJECTS, resume=p_cursor))["result"] == {
                "resumed": True
            }
            got = [await projects.next() for _ in range(4)]
            assert await projects.quiet(0.3) == []
            assert [(e["action"], (e.get("new_val") or e["old_val"])["title"]) for e in got] == [
                ("insert", "x"),
                ("update", "x2"),
                ("delete", "x2"),
                ("insert", "y"),
            ]
            collabs = FeedReader(ws)
            await collabs.subscribe(
                {"collaborators": [{"project_id": None, "account_id": None, "name": None}]},
                resume=c_cursor,
            )
            got = [await collabs.next() for _ in range(7)]
            assert await collabs.quiet(0.3) == []
            summary = [
                (
                    e["action"],
                    (e.get("new_val") or e["old_val"])["project_id"] == x,
                    (e.get("new_val") or e["old_val"])["name"],
                )
                for e in got
            ]
            # Joining x: both members; leaving x: both gone; joining y: both; rename: Bob in y.
            assert sorted(summary[:2]) == [("insert", True, "Bob"), ("insert", True, "Test User")]
            assert sorted(summary[2:4]) == [("delete", True, "Bob"), ("delete", True, "Test User")]
            assert sorted(summary[4:6]) == [
                ("insert", False, "Bob"),
                ("insert", False, "Test User"),
            ]
            assert summary[6:] == [("update", False, "Rob")]
