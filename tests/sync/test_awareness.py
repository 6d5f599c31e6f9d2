"""Presence (awareness) under a hostile member: floods are refused before they are read,
and a client id stays with the connection, then the account, that announced it."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import UUID

import websockets
from pycrdt import Awareness, Doc, Encoder, create_awareness_message

from tests.conftest import make_user
from tests.sync.yclient import YClient, connect, until, yjs_url


def _update(entries: list[tuple[int, int, Any]]) -> bytes:
    enc = Encoder()
    enc.write_var_uint(len(entries))
    for cid, clock, state in entries:
        enc.write_var_uint(cid)
        enc.write_var_uint(clock)
        enc.write_var_string(json.dumps(state))
    return enc.to_bytes()


def _view(client: YClient) -> dict[int, dict[str, Any]]:
    """The room's presence as a y-protocols client sees it: every awareness update the
    observer received, applied in order by pycrdt's Awareness (stale clocks ignored)."""
    awareness = Awareness(Doc())
    for update in client.awareness:
        awareness.apply_awareness_update(update, "server")
    states = dict(awareness.states)
    states.pop(awareness.client_id, None)
    return states


async def _member(server: Any, project: UUID) -> Any:
    other = await make_user(server, name="Mallory")
    await server.services.pool.execute(
        "INSERT INTO project_users (project_id, account_id, role) VALUES ($1, $2, 'collaborator')",
        project,
        UUID(other.account_id),
    )
    return other


async def _closed_with(server: Any, project: UUID, key: str, message: bytes) -> int | None:
    async with websockets.connect(yjs_url(server, project, "p.txt", key), max_size=None) as conn:
        await conn.send(message)
        try:
            while True:
                await asyncio.wait_for(conn.recv(), 20)
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None


async def test_awareness_flood_is_closed_with_too_large_and_changes_nothing(server, user, project):
    async with (
        connect(server, project, "p.txt", user.key) as observer,
        connect(server, project, "p.txt", user.key) as present,
    ):
        await asyncio.wait_for(observer.synced.wait(), 10)
        await asyncio.wait_for(present.synced.wait(), 10)
        await present.send_awareness(_update([(42, 1, {"cursor": 3})]))
        await until(lambda: 42 in _view(observer))
        before = _view(observer)

        # 3.4 million empty entries: over 16 MiB, under the document cap.
        enc = Encoder()
        enc.write_var_uint(3_400_000)
        flood = enc.to_bytes() + b"\x80\x80\x01\x01\x00" * 3_400_000
        assert 16 * 1024 * 1024 < len(flood) < server.services.settings.sync_max_document_bytes
        big = create_awareness_message(flood)
        assert await _closed_with(server, project, user.key, big) == 4413
        # Announcing millions of entries but carrying two: refused by the count before
        # any entry is read (a cap checked after reading them all would instead find the
        # message malformed, and a flood would have cost the reading).
        enc = Encoder()
        enc.write_var_uint(10_000_000)
        short = enc.to_bytes() + b"\x80\x80\x01\x01\x00" * 2
        assert (
            await _closed_with(server, project, user.key, create_awareness_message(short)) == 4413
        )
        # A small message announcing more entries than the cap.
        many = create_awareness_message(_update([(1000 + i, 1, {}) for i in range(65)]))
        assert await _closed_with(server, project, user.key, many) == 4413
        # One state over the message cap.
        huge = create_awareness_message(_update([(7, 1, {"big": "x" * 70_000})]))
        assert await _closed_with(server, project, user.key, huge) == 4413
        # States that together exceed what one connection may hold.
        limited = server.services.settings.sync_awareness_max_connection_bytes
        assert 40_000 < limited < 80_000
        async with websockets.connect(
            yjs_url(server, project, "p.txt", user.key), max_size=None
        ) as conn:
            await conn.send(create_awareness_message(_update([(8, 1, {"a": "x" * 40_000})])))
            await conn.send(create_awareness_message(_update([(9, 1, {"b": "y" * 40_000})])))
            try:
                while True:
                    await asyncio.wait_for(conn.recv(), 20)
            except websockets.ConnectionClosed as exc:
                assert exc.rcvd is not None and exc.rcvd.code == 4413

        await until(lambda: 8 not in _view(observer))
        assert _view(observer) == before
        # What the room holds, as a client joining now receives it.
        async with connect(server, project, "p.txt", user.key) as late:
            await until(lambda: 42 in _view(late))
            await late.send_raw(b"\x03")  # query awareness: the same again
            await until(lambda: len(late.awareness) >= 2)
            assert _view(late) == before
        # The room carries on: a normal update is still relayed.
        await present.send_awareness(_update([(42, 2, {"cursor": 4})]))
        await until(lambda: _view(observer).get(42, {}).get("cursor") == 4)


async def test_normal_awareness_update_is_relayed_to_a_yjs_client(server, user, project):
    async with (
        connect(server, project, "p.txt", user.key) as observer,
        connect(server, project, "p.txt", user.key) as editor,
    ):
        await asyncio.wait_for(observer.synced.wait(), 10)
        await asyncio.wait_for(editor.synced.wait(), 10)
        local = Awareness(editor.doc)
        local.set_local_state({"user": {"name": "me", "color": "#0f0"}, "cursor": {"anchor": 1}})
        await editor.send_awareness(local.encode_awareness_update([local.client_id]))
        await until(lambda: local.client_id in _view(observer))
        assert _view(observer)[local.client_id] == {
            "user": {"name": "Test User", "color": "#0f0", "account_id": user.account_id},
            "cursor": {"anchor": 1},
        }
        local.set_local_state_field("cursor", {"anchor": 5})
        await editor.send_awareness(local.encode_awareness_update([local.client_id]))
        await until(lambda: _view(observer)[local.client_id]["cursor"] == {"anchor": 5})
        # Colours go into collaborators' style attributes: only hex colours pass.
        overlay = "red;position:fixed;inset:0;z-index:99999;background:url(data:x)"
        local.set_local_state_field(
            "user", {"name": "me", "color": overlay, "colorLight": "#30bced33"}
        )
        await editor.send_awareness(local.encode_awareness_update([local.client_id]))
        await until(lambda: "color" not in _view(observer)[local.client_id]["user"])
        assert _view(observer)[local.client_id]["user"] == {
            "name": "Test User",
            "colorLight": "#30bced33",
            "account_id": user.account_id,
        }


async def test_live_awareness_id_cannot_be_squatted_by_another_member(server, user, project):
    mallory = await _member(server, project)
    async with (
        connect(server, project, "p.txt", user.key) as observer,
        connect(server, project, "p.txt", user.key) as victim,
        connect(server, project, "p.txt", mallory.key) as squatter,
    ):
        for c in (observer, victim, squatter):
            await asyncio.wait_for(c.synced.wait(), 10)
        await victim.send_awareness(_update([(500, 3, {"cursor": 1})]))
        await until(lambda: 500 in _view(observer))
        await squatter.send_awareness(_update([(500, 1_000_000, {"cursor": 666})]))
        await squatter.send_awareness(_update([(500, 1_000_001, None)]))
        # A marker after the squat: once it arrives, the squat would have too.
        await squatter.send_awareness(_update([(501, 1, {"marker": True})]))
        await until(lambda: 501 in _view(observer))
        assert _view(observer)[500]["user"]["account_id"] == user.account_id
        assert _view(observer)[500]["cursor"] == 1
        assert not any(b"666" in update for update in observer.awareness)
        await victim.send_awareness(_update([(500, 4, {"cursor": 2})]))
        await until(lambda: _view(observer)[500]["cursor"] == 2)


async def test_disconnected_clients_awareness_id_stays_with_its_account(server, user, project):
    mallory = await _member(server, project)
    async with (
        connect(server, project, "p.txt", user.key) as observer,
        connect(server, project, "p.txt", mallory.key) as squatter,
    ):
        await asyncio.wait_for(observer.synced.wait(), 10)
        await asyncio.wait_for(squatter.synced.wait(), 10)
        async with connect(server, project, "p.txt", user.key) as victim:
            await asyncio.wait_for(victim.synced.wait(), 10)
            await victim.send_awareness(_update([(500, 3, {"cursor": 1})]))
            await until(lambda: 500 in _view(observer))
        await until(lambda: 500 not in _view(observer))

        await squatter.send_awareness(_update([(500, 2**40, {"cursor": 666})]))
        await squatter.send_awareness(_update([(501, 1, {"marker": True})]))
        await until(lambda: 501 in _view(observer))
        assert 500 not in _view(observer)
        assert not any(b"666" in update for update in observer.awareness)

        # The rightful client comes back with its id and the clock it had (as y-websocket
        # does on reconnect) and is shown at once, as itself.
        async with connect(server, project, "p.txt", user.key) as back:
            await asyncio.wait_for(back.synced.wait(), 10)
            await back.send_awareness(_update([(500, 3, {"cursor": 7})]))
            await until(lambda: 500 in _view(observer))
            shown = _view(observer)[500]
            assert shown["user"]["account_id"] == user.account_id
            assert shown["cursor"] == 7
            # The squatter still cannot touch it.
            await squatter.send_awareness(_update([(500, 2**41, {"cursor": 666})]))
            await squatter.send_awareness(_update([(501, 2, {"marker": 2})]))
            await until(lambda: _view(observer)[501]["marker"] == 2)
            assert _view(observer)[500]["cursor"] == 7


async def test_reserved_awareness_id_is_free_again_after_the_reservation(settings):
    from collab.projects.store import create_project
    from tests.conftest import serve

    async with serve(settings.replace(sync_awareness_reserve_seconds=1)) as server:
        user = await make_user(server)
        project = await create_project(
            server.services.pool, server.services.settings.projects_dir, UUID(user.account_id)
        )
        other = await _member(server, project)
        async with connect(server, project, "p.txt", user.key) as observer:
            await asyncio.wait_for(observer.synced.wait(), 10)
            async with connect(server, project, "p.txt", user.key) as first:
                await asyncio.wait_for(first.synced.wait(), 10)
                await first.send_awareness(_update([(600, 1, {"cursor": 1})]))
                await until(lambda: 600 in _view(observer))
            await until(lambda: 600 not in _view(observer))
            async with connect(server, project, "p.txt", other.key) as later:
                await asyncio.wait_for(later.synced.wait(), 10)

                async def claimed() -> bool:
                    await later.send_awareness(_update([(600, 9, {"cursor": 2})]))
                    await asyncio.sleep(0.2)
                    return 600 in _view(observer)

                deadline = asyncio.get_running_loop().time() + 20
                while not await claimed():
                    assert asyncio.get_running_loop().time() < deadline
                assert _view(observer)[600]["user"]["account_id"] == other.account_id
