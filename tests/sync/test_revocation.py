"""Revoking access closes open connections: a member removed from a project, a session
signed out, an API key revoked, an account deleted — on /yjs and /ws, in every server
process, and nothing a revoked connection sends afterwards is applied or stored."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import websockets
from pycrdt import Text

from collab.auth.tokens import SESSION_COOKIE
from tests.conftest import Served, make_user, serve, ws_connect
from tests.sync.processes import ServerProcess, free_port
from tests.sync.yclient import YClient, connect, stored_text, until
from tests.tables.conftest import add_member, remove_member


async def closed_with(client: YClient, timeout: float = 20) -> int:
    return int(await asyncio.wait_for(asyncio.shield(client.closed), timeout))


async def test_removed_member_documents_close_with_4403_and_stop_receiving(
    server, user, project
) -> None:
    member = await make_user(server)
    async with ws_connect(server, user.key) as owner_ws:
        assert "result" in await add_member(owner_ws, str(project), member.account_id)
        async with (
            connect(server, project, "shared.md", user.key) as owner,
            connect(server, project, "shared.md", member.key) as mine,
        ):
            await asyncio.wait_for(mine.synced.wait(), 10)
            await asyncio.wait_for(owner.synced.wait(), 10)
            owner.text.insert(0, "before ")
            await until(lambda: "before" in str(mine.text))
            assert "result" in await remove_member(owner_ws, str(project), member.account_id)
            assert await closed_with(mine) == 4403
            owner.text.insert(len(str(owner.text)), "after")
            await owner.wait_acked()
            await asyncio.sleep(0.3)
            assert "after" not in str(mine.text)
        # A new connection is refused as for any non-member.
        async with connect(server, project, "shared.md", member.key) as again:
            assert await closed_with(again) == 4404


async def test_writes_arriving_after_removal_are_never_applied_or_stored(
    server, user, project
) -> None:
    # Each round checks that nothing sent after the revocation was applied. Whether a
    # round had writes in flight at that moment depends on timing, so rounds repeat
    # until one did (the case the test is about), and every round must hold.
    exercised = False
    for round_no in range(8):
        applied, sent = await _type_through_removal(server, user, project, f"typing{round_no}.md")
        assert applied <= sent
        if applied < sent:
            exercised = True
            break
    assert exercised, "no round had writes in flight when access was revoked"


async def _type_through_removal(server, user, project, path: str) -> tuple[int, int]:
    member = await make_user(server)
    rooms = server.services.extra["rooms"]
    seen_at_revocation: list[str] = []

    def snapshot(project_id: str, account_id: str | None) -> None:
        # Runs in the same step as the closes: what the room holds at that moment.
        room = rooms.rooms.get((project, path))
        if project_id == str(project) and room is not None:
            seen_at_revocation.append(str(room.doc.get("source", type=Text)))

    server.services.extra["revocations"].on_project_lost(snapshot)
    async with ws_connect(server, user.key) as owner_ws:
        await add_member(owner_ws, str(project), member.account_id)
        async with (
            connect(server, project, path, member.key) as typist,
            connect(server, project, path, user.key) as owner,
        ):
            await asyncio.wait_for(typist.synced.wait(), 10)
            await asyncio.wait_for(owner.synced.wait(), 10)
            sent = 0

            async def type_on() -> None:
                nonlocal sent
                while not typist.closed.done():
                    typist.text.insert(len(str(typist.text)), f"<{sent}>")
                    sent += 1
                    await asyncio.sleep(0.002)

            typing = asyncio.create_task(type_on())
            await until(lambda: typist.acked > 20)
            await remove_member(owner_ws, str(project), member.account_id)
            assert await closed_with(typist) == 4403
            await typing
            # A barrier: the room relays and stores in the order it applies, so once the
            # owner's own edit is acknowledged the owner has received, and the store
            # holds, everything the room applied before it.
            owner.text.insert(0, "|")
            await owner.wait_acked()
            final = str(owner.text)
    assert seen_at_revocation, "the revocation hook did not run"
    applied = seen_at_revocation[0]
    # Nothing the typist sent after the server revoked its access reached the document,
    # its store, or the other client, although it kept sending until it saw the close.
    assert final == "|" + applied, (len(final), len(applied))
    assert await stored_text(server, project, path) == "|" + applied
    markers = [m for m in applied.replace(">", "").split("<") if m]
    assert markers == [str(i) for i in range(len(markers))]
    return len(markers), sent


async def test_forty_connections_of_a_removed_member_are_all_closed(server, user, project) -> None:
    member = await make_user(server)
    async with ws_connect(server, user.key) as owner_ws:
        await add_member(owner_ws, str(project), member.account_id)
        async with contextlib.AsyncExitStack() as stack:
            clients = await asyncio.gather(
                *(
                    stack.enter_async_context(
                        connect(server, project, f"doc{n % 8}.md", member.key, acks=False)
                    )
                    for n in range(40)
                )
            )
            for c in clients:
                await asyncio.wait_for(c.synced.wait(), 20)
            # One of the member's connections on another project stays open.
            other_project = await add_project_for(server, member)
            async with connect(server, other_project, "mine.md", member.key) as unrelated:
                await asyncio.wait_for(unrelated.synced.wait(), 10)
                await remove_member(owner_ws, str(project), member.account_id)
                codes = await asyncio.gather(*(closed_with(c, 20) for c in clients))
                assert codes == [4403] * 40
                assert not unrelated.closed.done()
                unrelated.text.insert(0, "still here")
                await unrelated.wait_acked()


async def add_project_for(server: Served, account: Any) -> UUID:
    from collab.projects.store import create_project

    settings = server.services.settings
    return await create_project(
        server.services.pool, settings.projects_dir, UUID(account.account_id), "own"
    )


@contextlib.asynccontextmanager
async def cookie_yjs(served: Any, project: UUID, path: str, cookie: str) -> AsyncIterator[YClient]:
    async with websockets.connect(
        f"{served.ws}/yjs/{project}/{path}?acks=1",
        additional_headers={"Cookie": f"{SESSION_COOKIE}={cookie}"},
        max_size=None,
    ) as conn:
        client = YClient(conn)
        await client.start()
        try:
            yield client
        finally:
            await client.close()


async def ws_closed(ws: Any, timeout: float = 15) -> int:
    """Read (and drop) frames until the socket closes; its close code."""

    async def drain() -> int:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for _ in ws.conn:
                pass
        return int(ws.conn.close_code)

    return await asyncio.wait_for(drain(), timeout)


async def test_sign_out_closes_the_sessions_connections_with_4401(server, user, project) -> None:
    cookie_headers = {"Cookie": f"{SESSION_COOKIE}={user.cookie}"}
    async with (
        ws_connect(server, headers=cookie_headers) as session_ws,
        ws_connect(server, user.key) as key_ws,
        cookie_yjs(server, project, "s.md", user.cookie) as session_doc,
        connect(server, project, "s.md", user.key) as key_doc,
    ):
        await asyncio.wait_for(session_doc.synced.wait(), 10)
        assert (await session_ws.call("ping"))["result"] == "pong"
        async with server.client(cookies={SESSION_COOKIE: user.cookie}) as http:
            assert (await http.post("/api/auth/logout")).status_code == 200
        assert await closed_with(session_doc) == 4401
        assert await ws_closed(session_ws) == 4401
        # What rests on another credential of the same account goes on.
        assert (await key_ws.call("ping"))["result"] == "pong"
        key_doc.text.insert(0, "key still writes")
        await key_doc.wait_acked()
        assert not key_doc.closed.done()


async def test_revoked_key_closes_its_connections_with_4401(server, user, project) -> None:
    async with server.client(headers={"Authorization": f"Bearer {user.key}"}) as http:
        second = (await http.post("/api/auth/keys", json={"name": "second"})).json()
    async with contextlib.AsyncExitStack() as stack:
        revoked_ws = [
            await stack.enter_async_context(ws_connect(server, second["key"])) for _ in range(20)
        ]
        revoked_doc = await stack.enter_async_context(
            connect(server, project, "k.md", second["key"])
        )
        kept_ws = await stack.enter_async_context(ws_connect(server, user.key))
        await asyncio.wait_for(revoked_doc.synced.wait(), 10)
        for ws in revoked_ws:
            assert (await ws.call("ping"))["result"] == "pong"
        async with server.client(headers={"Authorization": f"Bearer {user.key}"}) as http:
            r = await http.delete(f"/api/auth/keys/{second['key_id']}")
            assert r.status_code == 200
        assert await closed_with(revoked_doc) == 4401
        assert await asyncio.gather(*(ws_closed(ws) for ws in revoked_ws)) == [4401] * 20
        assert (await kept_ws.call("ping"))["result"] == "pong"
    # And it cannot write by reconnecting.
    async with connect(server, project, "k.md", second["key"]) as again:
        assert await closed_with(again) == 4401


async def test_deleted_account_loses_every_connection(server, user, project) -> None:
    member = await make_user(server)
    async with ws_connect(server, user.key) as owner_ws:
        await add_member(owner_ws, str(project), member.account_id)
    async with (
        ws_connect(server, member.key) as member_ws,
        connect(server, project, "d.md", member.key) as member_doc,
    ):
        await asyncio.wait_for(member_doc.synced.wait(), 10)
        await server.services.pool.execute(
            "DELETE FROM accounts WHERE account_id = $1", UUID(member.account_id)
        )
        assert await closed_with(member_doc) in (4401, 4403)
        assert await ws_closed(member_ws) == 4401


async def test_revocations_reach_connections_on_another_server_process(
    settings, server, user, project, tmp_path
) -> None:
    """The removal, the sign-out and the key revocation are made through one process; the
    connections they end are held by another, real, process."""
    member = await make_user(server)
    other = ServerProcess(settings.data_dir, settings.database_url, free_port(), tmp_path / "b.log")
    await other.start()
    try:
        async with server.client(headers={"Authorization": f"Bearer {member.key}"}) as http:
            spare = (await http.post("/api/auth/keys", json={})).json()
        async with ws_connect(server, user.key) as owner_ws:
            await add_member(owner_ws, str(project), member.account_id)
            async with (
                connect(other, project, "far.md", member.key) as far_doc,
                ws_connect(other, spare["key"]) as far_key_ws,
                ws_connect(
                    other, headers={"Cookie": f"{SESSION_COOKIE}={member.cookie}"}
                ) as far_session_ws,
            ):
                await asyncio.wait_for(far_doc.synced.wait(), 10)
                assert (await far_key_ws.call("ping"))["result"] == "pong"
                assert (await far_session_ws.call("ping"))["result"] == "pong"

                await remove_member(owner_ws, str(project), member.account_id)
                assert await closed_with(far_doc) == 4403

                async with server.client(cookies={SESSION_COOKIE: member.cookie}) as http:
                    assert (await http.post("/api/auth/logout")).status_code == 200
                assert await ws_closed(far_session_ws) == 4401

                async with server.client(headers={"Authorization": f"Bearer {member.key}"}) as h:
                    assert (await h.delete(f"/api/auth/keys/{spare['key_id']}")).status_code == 200
                assert await ws_closed(far_key_ws) == 4401
    finally:
        other.stop()


async def test_two_in_process_servers_each_close_their_own(settings, server, user, project) -> None:
    """Forty member connections spread over two servers on one database all close."""
    member = await make_user(server)
    async with serve(settings) as other, ws_connect(server, user.key) as owner_ws:
        await add_member(owner_ws, str(project), member.account_id)
        async with contextlib.AsyncExitStack() as stack:
            clients = await asyncio.gather(
                *(
                    stack.enter_async_context(
                        connect(
                            (server, other)[n % 2],
                            project,
                            f"two{n % 4}.md",
                            member.key,
                            acks=False,
                        )
                    )
                    for n in range(40)
                )
            )
            for c in clients:
                await asyncio.wait_for(c.synced.wait(), 20)
            await remove_member(owner_ws, str(project), member.account_id)
            codes = await asyncio.gather(*(closed_with(c, 20) for c in clients))
            assert codes == [4403] * 40
            for served in (server, other):
                await until(
                    lambda s=served: s.services.extra["revocations"].open_connections() <= 1
                )


async def test_session_reaching_its_expiry_closes_its_connections(server, user, project) -> None:
    await server.services.pool.execute(
        "UPDATE sessions SET expires = now() + interval '3 seconds' WHERE account_id = $1",
        UUID(user.account_id),
    )
    cookie_headers = {"Cookie": f"{SESSION_COOKIE}={user.cookie}"}
    async with (
        ws_connect(server, headers=cookie_headers) as session_ws,
        cookie_yjs(server, project, "e.md", user.cookie) as session_doc,
    ):
        assert (await session_ws.call("ping"))["result"] == "pong"
        assert await closed_with(session_doc) == 4401
        assert await ws_closed(session_ws) == 4401


async def test_deleted_project_closes_its_documents_for_members(server, user, project) -> None:
    member = await make_user(server)
    async with ws_connect(server, user.key) as owner_ws:
        await add_member(owner_ws, str(project), member.account_id)
    async with (
        connect(server, project, "gone.md", member.key) as member_doc,
        connect(server, project, "gone.md", user.key) as owner_doc,
    ):
        await asyncio.wait_for(member_doc.synced.wait(), 10)
        await asyncio.wait_for(owner_doc.synced.wait(), 10)
        await server.services.pool.execute(
            "UPDATE projects SET deleted = true WHERE project_id = $1", project
        )
        assert await closed_with(member_doc) == 4403
        assert await closed_with(owner_doc) == 4403


async def test_admin_who_loses_admin_rights_loses_documents_of_foreign_projects(
    server, user, project
) -> None:
    admin = await make_user(server)
    await server.services.pool.execute(
        "UPDATE accounts SET is_admin = true WHERE account_id = $1", UUID(admin.account_id)
    )
    own = await add_project_for(server, admin)
    async with (
        connect(server, project, "foreign.md", admin.key) as foreign,
        connect(server, own, "own.md", admin.key) as mine,
    ):
        await asyncio.wait_for(foreign.synced.wait(), 10)
        await asyncio.wait_for(mine.synced.wait(), 10)
        await server.services.pool.execute(
            "UPDATE accounts SET is_admin = false WHERE account_id = $1", UUID(admin.account_id)
        )
        assert await closed_with(foreign) == 4403
        mine.text.insert(0, "still mine")
        await mine.wait_acked()
        assert not mine.closed.done()


async def test_credential_revoked_before_its_connection_registered_is_still_closed() -> None:
    """The revocation may be dispatched between a connection's authentication and its
    registration: it is remembered, and the connection is closed as it registers."""
    from uuid import uuid4

    from collab.auth.accounts import Account
    from collab.auth.identity import Identity
    from collab.auth.revocation import CLOSE_REVOKED, Revocations

    revocations = Revocations(pool=None)  # type: ignore[arg-type]
    account = Account(uuid4(), "a@example.com", "A", False)
    key_id, other_id = uuid4(), uuid4()
    revocations.revoke_credential(f"key:{key_id}", "the API key was revoked")
    closed: list[tuple[int, str]] = []
    late = revocations.watch(Identity(account, "key", f"key:{key_id}"), "p")
    late.set_closer(lambda code, reason: closed.append((code, reason)))
    assert late.revoked and [code for code, _ in closed] == [CLOSE_REVOKED]
    fine = revocations.watch(Identity(account, "key", f"key:{other_id}"))
    assert not fine.revoked


async def test_program_client_stops_with_unauthenticated_when_its_key_is_revoked(
    server, user
) -> None:
    from collab.client import Client, ClientError

    async with server.client(headers={"Authorization": f"Bearer {user.key}"}) as http:
        spare = (await http.post("/api/auth/keys", json={})).json()
    async with Client(server.ws, spare["key"], max_reconnect_delay=0.2) as program:
        feed = program.changes({"projects": [{"project_id": None, "title": None}]})
        assert (await anext(feed))["action"] == "initial"
        async with server.client(headers={"Authorization": f"Bearer {user.key}"}) as http:
            assert (await http.delete(f"/api/auth/keys/{spare['key_id']}")).status_code == 200
        try:
            await asyncio.wait_for(anext(feed), 20)
        except ClientError as err:
            assert err.code == "unauthenticated"
        else:
            raise AssertionError("the feed went on after its key was revoked")
        assert program.revoked
