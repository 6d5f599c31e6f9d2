"""Changefeeds: events for permitted rows only, membership-aware, cancel, limits."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import make_user, serve, ws_connect
from tests.tables.conftest import (
    FeedReader,
    add_member,
    create_project,
    db,
    insert_project,
    remove_member,
)

PROJECTS = {"projects": [{"project_id": None, "title": None}]}


async def test_feed_delivers_insert_update_delete_with_only_the_asked_fields(server, user):
    async with ws_connect(server, user.key) as ws, ws_connect(server, user.key) as writer:
        feed = FeedReader(ws)
        answer = await feed.subscribe(PROJECTS)
        assert answer["result"] == {"projects": []}
        assert answer["feed"].startswith("f-")
        pid = await create_project(writer, "one")
        event = await feed.next()
        assert event == {
            "feed": answer["feed"],
            "action": "insert",
            "new_val": {"project_id": pid, "title": "one"},
            "cursor": event["cursor"],
        }
        await writer.request({"query": {"projects": {"project_id": pid, "title": "two"}}})
        event = await feed.next()
        assert event["action"] == "update"
        assert event["new_val"] == {"project_id": pid, "title": "two"}
        assert event["old_val"] == {"project_id": pid, "title": "one"}
        conn = await db(server)
        try:
            await conn.execute("DELETE FROM projects WHERE project_id = $1", pid)
        finally:
            await conn.close()
        event = await feed.next()
        assert event["action"] == "delete"
        assert event["old_val"] == {"project_id": pid, "title": "two"}
        assert "new_val" not in event


async def test_a_change_only_to_fields_a_feed_did_not_ask_for_sends_it_nothing(server, user):
    async with ws_connect(server, user.key) as ws, ws_connect(server, user.key) as writer:
        pid = await create_project(writer, "one")
        feed = FeedReader(ws)
        await feed.subscribe(PROJECTS)
        everything = FeedReader(ws)
        await everything.subscribe({"projects": [{"project_id": None, "description": None}]})
        await writer.request({"query": {"projects": {"project_id": pid, "description": "d"}}})
        # The feed that asked for the description sees the change...
        event = await everything.next()
        assert event["new_val"] == {"project_id": pid, "description": "d"}
        # ...the one that asked for the title does not: its next event is the next real one.
        await writer.request({"query": {"projects": {"project_id": pid, "title": "two"}}})
        event = await feed.next()
        assert event["action"] == "update", event
        assert event["old_val"] == {"project_id": pid, "title": "one"}
        assert event["new_val"] == {"project_id": pid, "title": "two"}


async def test_feed_filter_by_example_turns_updates_into_inserts_and_deletes(server, user):
    async with ws_connect(server, user.key) as ws, ws_connect(server, user.key) as writer:
        pid = await create_project(writer, "draft")
        feed = FeedReader(ws)
        answer = await feed.subscribe({"projects": [{"project_id": None, "title": "final"}]})
        assert answer["result"] == {"projects": []}
        await writer.request({"query": {"projects": {"project_id": pid, "title": "final"}}})
        assert (await feed.next())["action"] == "insert"
        await writer.request({"query": {"projects": {"project_id": pid, "title": "again"}}})
        event = await feed.next()
        assert event["action"] == "delete"
        assert event["old_val"]["title"] == "final"


async def test_feed_never_sees_other_peoples_projects(server, user):
    other = await make_user(server)
    async with (
        ws_connect(server, user.key) as ws,
        ws_connect(server, user.key) as writer,
        ws_connect(server, other.key) as ws2,
    ):
        feed = FeedReader(ws)
        await feed.subscribe(PROJECTS)
        users = FeedReader(ws)
        await users.subscribe({"project_users": [{"project_id": None, "account_id": None}]})
        theirs = await create_project(ws2, "theirs")
        await ws2.request({"query": {"projects": {"project_id": theirs, "title": "still theirs"}}})
        mine = await create_project(writer, "mine")
        # Their changes committed first: had they leaked, they would come first.
        assert (await feed.next())["new_val"]["project_id"] == mine
        assert await feed.quiet(0.5) == []


async def test_added_collaborator_gets_inserts_and_removed_one_gets_deletes_then_nothing(
    server, user
):
    bob = await make_user(server, name="Bob")
    async with (
        ws_connect(server, user.key) as ws,
        ws_connect(server, user.key) as alice_feeds,
        ws_connect(server, bob.key) as bws,
        ws_connect(server, bob.key) as bob_writes,
    ):
        # Requests skip the frames before their answer, so feeds get sockets of their own.
        pid = await create_project(ws, "shared")
        await create_project(ws, "private")
        projects = FeedReader(bws)
        assert (await projects.subscribe(PROJECTS))["result"] == {"projects": []}
        collabs = FeedReader(bws)
        await collabs.subscribe(
            {"collaborators": [{"project_id": None, "account_id": None, "name": None}]}
        )
        members = FeedReader(bws)
        await members.subscribe({"project_users": [{"project_id": None, "account_id": None}]})
        alice_collabs = FeedReader(alice_feeds)
        answer = await alice_collabs.subscribe(
            {"collaborators": [{"project_id": pid, "account_id": None, "name": None}]}
        )
        assert len(answer["result"]["collaborators"]) == 1

        assert "result" in await add_member(ws, pid, bob.account_id)
        event = await projects.next()
        assert (event["action"], event["new_val"]) == (
            "insert",
            {"project_id": pid, "title": "shared"},
        )
        got = [await collabs.next(), await collabs.next()]
        assert {(e["action"], e["new_val"]["name"]) for e in got} == {
            ("insert", "Test User"),
            ("insert", "Bob"),
        }
        got = [await members.next(), await members.next()]
        assert {e["new_val"]["account_id"] for e in got} == {user.account_id, bob.account_id}
        event = await alice_collabs.next()
        assert (event["action"], event["new_val"]["name"]) == ("insert", "Bob")

        # Bob renames himself: both see the collaborators row change.
        await bob_writes.request(
            {"query": {"accounts": {"account_id": bob.account_id, "name": "Robert"}}}
        )
        event = await alice_collabs.next()
        assert event["action"] == "update"
        assert (event["old_val"]["name"], event["new_val"]["name"]) == ("Bob", "Robert")
        assert (await collabs.next())["new_val"]["name"] == "Robert"

        await ws.request({"query": {"projects": {"project_id": pid, "title": "renamed"}}})
        assert (await projects.next())["new_val"]["title"] == "renamed"

        assert "result" in await remove_member(ws, pid, bob.account_id)
        event = await projects.next()
        assert (event["action"], event["old_val"]["project_id"]) == ("delete", pid)
        got = [await collabs.next(), await collabs.next()]
        assert {e["action"] for e in got} == {"delete"}
        event = await alice_collabs.next()
        assert (event["action"], event["old_val"]["account_id"]) == ("delete", bob.account_id)
        got = [await members.next(), await members.next()]
        assert {e["action"] for e in got} == {"delete"}
        assert {e["old_val"]["account_id"] for e in got} == {user.account_id, bob.account_id}

        await ws.request({"query": {"projects": {"project_id": pid, "title": "after"}}})
        await ws.request({"query": {"accounts": {"account_id": user.account_id, "name": "A"}}})
        assert await projects.quiet(1.0) == []
        assert await collabs.quiet(0.2) == []
        assert await members.quiet(0.2) == []


async def test_accounts_feed_sees_only_my_own_record(server, user):
    other = await make_user(server)
    async with (
        ws_connect(server, user.key) as ws,
        ws_connect(server, user.key) as writer,
        ws_connect(server, other.key) as ws2,
    ):
        feed = FeedReader(ws)
        answer = await feed.subscribe({"accounts": [{"account_id": None, "name": None}]})
        assert answer["result"]["accounts"] == [
            {"account_id": user.account_id, "name": "Test User"}
        ]
        await ws2.request({"query": {"accounts": {"account_id": other.account_id, "name": "Z"}}})
        await writer.request({"query": {"accounts": {"account_id": user.account_id, "name": "Me"}}})
        assert (await feed.next())["new_val"]["name"] == "Me"
        assert await feed.quiet(0.5) == []


async def test_cancel_ends_a_feed_and_closing_the_socket_drops_its_feeds(server, user):
    tables = server.services.extra["tables"]
    async with ws_connect(server, user.key) as ws, ws_connect(server, user.key) as writer:
        feed = FeedReader(ws)
        answer = await feed.subscribe(PROJECTS)
        assert tables.feed_count() == 1
        cancelled = await ws.request({"cancel": answer["feed"]})
        assert cancelled["result"] == {"cancelled": answer["feed"]}
        assert (await ws.request({"cancel": answer["feed"]}))["error"]["code"] == "unknown_feed"
        await create_project(writer)
        assert await feed.quiet(0.7) == []
        await feed.subscribe(PROJECTS)
        await feed.subscribe(PROJECTS)
        assert tables.feed_count() == 2
    for _ in range(100):
        if tables.feed_count() == 0:
            break
        await asyncio.sleep(0.05)
    assert tables.feed_count() == 0


async def test_feed_limits_per_connection_and_per_account(settings, tmp_path):
    limited = settings.replace(tables_max_feeds_per_connection=2, tables_max_feeds_per_account=3)
    async with serve(limited) as server:
        user = await make_user(server)
        async with ws_connect(server, user.key) as ws, ws_connect(server, user.key) as ws2:
            feed = FeedReader(ws)
            for _ in range(2):
                assert "feed" in await feed.subscribe(PROJECTS)
            refused = await feed.subscribe(PROJECTS)
            assert refused["error"]["code"] == "too_many_feeds"
            feed2 = FeedReader(ws2)
            assert "feed" in await feed2.subscribe(PROJECTS)
            refused = await feed2.subscribe(PROJECTS)
            assert refused["error"]["code"] == "too_many_feeds"
            assert "per account" in refused["error"]["message"]


async def test_server_side_writes_reach_feeds_and_change_hooks(server, user):
    tables = server.services.extra["tables"]
    seen = []
    tables.on_change("projects", lambda change: seen.append((change.op, change.new)))
    async with ws_connect(server, user.key) as ws:
        feed = FeedReader(ws)
        await feed.subscribe(PROJECTS)
        conn = await db(server)
        try:
            pid = await insert_project(conn, user.account_id, "from the server")
        finally:
            await conn.close()
        event = await feed.next()
        assert event["new_val"] == {"project_id": pid, "title": "from the server"}
    assert seen[-1][0] == "I"
    assert seen[-1][1]["title"] == "from the server"


async def test_before_commit_hook_can_reject_a_write(server, user):
    from collab.errors import ApiError

    tables = server.services.extra["tables"]
    calls = []

    async def no_x(conn, request):
        calls.append(request)
        if request.values.get("title") == "x":
            raise ApiError("bad_title", "no x")

    tables.before_commit("projects", no_x)
    async with ws_connect(server, user.key) as ws:
        pid = await create_project(ws, "fine")
        answer = await ws.request({"query": {"projects": {"project_id": pid, "title": "x"}}})
        assert answer["error"]["code"] == "bad_title"
        row = await ws.request({"query": {"projects": {"project_id": pid, "title": None}}})
        assert row["result"]["projects"]["title"] == "fine"
    assert [c.op for c in calls] == ["insert", "update"]


async def test_slow_consumer_is_closed_with_4008_and_resumes_from_its_cursor(settings):
    """A client that stops reading: once its socket's buffers are full, what the server
    sends waits in its bounded queue (5 here), and the overflow closes it with 4008.
    (A message finding the socket free is written at once, so a burst to a client that
    reads never counts against the queue.) It resumes from its cursor with nothing
    missing."""
    import websockets

    query = {"projects": [{"project_id": None, "title": None, "description": None}]}
    async with serve(settings.replace(ws_send_queue=5)) as server:
        user = await make_user(server)
        # max_queue=1: the client stops reading its socket while a frame is unread.
        async with ws_connect(server, user.key, max_queue=1) as ws:
            feed = FeedReader(ws)
            answer = await feed.subscribe(query)
            conn = await db(server)
            try:
                async with conn.transaction():
                    pids = [await insert_project(conn, user.account_id, f"p{i}") for i in range(50)]
                # About 20 MB of events: more than the socket buffers hold.
                for rnd in range(40):
                    async with conn.transaction():
                        for pid in pids:
                            await conn.execute(
                                "UPDATE projects SET description = $1 WHERE project_id = $2",
                                f"{rnd}:" + "d" * 9990,
                                pid,
                            )
            finally:
                await conn.close()
            await asyncio.sleep(1)
            received = 0
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await ws.recv(10)
                    received += 1
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4008
            assert received < 50 + 40 * 50
        async with ws_connect(server, user.key) as ws:
            feed = FeedReader(ws)
            resumed = await feed.subscribe(query, resume=answer["cursor"])
            assert resumed["result"] == {"resumed": True}
            inserted = [await feed.next() for _ in pids]
            assert [e["new_val"]["project_id"] for e in inserted] == pids
            updates = [await feed.next() for _ in range(40 * 50)]
            assert [(e["action"], e["new_val"]["project_id"]) for e in updates] == [
                ("update", pid) for _ in range(40) for pid in pids
            ]
            assert [e["new_val"]["description"][:3] for e in updates[-50:]] == ["39:"] * 50


async def test_a_burst_over_many_read_rounds_arrives_whole_and_in_order(server, user, monkeypatch):
    """The listener sends its next read while it fans out the last one: with rounds of
    three rows, a burst of 40 updates still reaches the feed once each, in commit order."""
    from collab.tables import engine

    monkeypatch.setattr(engine, "BATCH", 3)
    async with ws_connect(server, user.key) as ws, ws_connect(server, user.key) as writer:
        pid = await create_project(writer, "t0")
        feed = FeedReader(ws)
        await feed.subscribe({"projects": [{"project_id": pid, "title": None}]})
        conn = await db(server)
        try:
            for i in range(1, 41):
                await conn.execute(
                    "UPDATE projects SET title = $1 WHERE project_id = $2", f"t{i}", pid
                )
        finally:
            await conn.close()
        titles = [(await feed.next())["new_val"]["title"] for _ in range(40)]
        assert titles == [f"t{i}" for i in range(1, 41)]
