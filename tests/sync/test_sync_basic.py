import asyncio
import secrets
import socket

from tests.sync.yclient import connect, until


async def test_two_pycrdt_clients_converge_and_updates_are_acknowledged(server, user, project):
    async with (
        connect(server, project, "notes.md", user.key) as a,
        connect(server, project, "notes.md", user.key) as b,
    ):
        await asyncio.wait_for(a.synced.wait(), 10)
        await asyncio.wait_for(b.synced.wait(), 10)
        a.text.insert(0, "hello ")
        b.text.insert(0, "world")
        await a.wait_acked()
        await b.wait_acked()
        await until(lambda: str(a.text) == str(b.text) and len(str(a.text)) == 11)
    rows = await server.services.pool.fetchval("SELECT count(*) FROM yjs_updates")
    assert rows >= 2


async def test_clients_arriving_together_at_a_cold_document_all_sync(server, user, project):
    from tests.sync.conftest import project_file

    project_file(server, project, "cold.txt").write_text("cold start\n")

    async def join():
        async with connect(server, project, "cold.txt", user.key) as c:
            await asyncio.wait_for(c.synced.wait(), 15)
            return str(c.text)

    texts = await asyncio.gather(*[join() for _ in range(20)])
    assert texts == ["cold start\n"] * 20


async def test_slow_client_is_disconnected_without_stalling_others(settings, tmp_path):
    from uuid import UUID

    import websockets
    from pycrdt import Doc, create_sync_message

    from collab.projects.store import create_project
    from tests.conftest import make_user, serve
    from tests.sync.yclient import yjs_url

    async with serve(settings.replace(sync_send_queue=32)) as server:
        user = await make_user(server)
        project = await create_project(
            server.services.pool, server.services.settings.projects_dir, UUID(user.account_id)
        )
        # A client that never reads: its socket buffers fill, then its queue.
        # A small fixed receive buffer (no autotuning) so that the kernel does not
        # absorb everything the server sends.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.connect((server.host, server.port))
        sock.setblocking(False)
        slow = await websockets.connect(
            yjs_url(server, project, "busy.txt", user.key), max_size=None, max_queue=1, sock=sock
        )
        await slow.send(create_sync_message(Doc()))
        async with (
            connect(server, project, "busy.txt", user.key) as writer,
            connect(server, project, "busy.txt", user.key) as reader,
        ):
            await asyncio.wait_for(writer.synced.wait(), 10)
            await asyncio.wait_for(reader.synced.wait(), 10)
            # 20 MB in paced 100 kB updates: a reading client keeps up, the slow one's
            # socket buffers and then its queue fill.
            for _ in range(200):
                # Random text: permessage-deflate would shrink repeated characters to nothing.
                writer.text.insert(0, secrets.token_hex(50_000))
                await asyncio.sleep(0.005)
            await writer.wait_acked(timeout=60)
            await until(lambda: len(str(reader.text)) == len(str(writer.text)), timeout=60)
            assert not reader.closed.done()
            # The server dropped the slow client (its close frame waits behind the data
            # it never read, so the server log and the room are where this shows).
            room = server.services.extra["rooms"].rooms[(project, "busy.txt")]
            await until(lambda: len(room.clients) == 2)
            assert all(c.close_code is None for c in room.clients)
            # Its handler is gone too, so it no longer holds the room open.
            await until(lambda: room.holds == 2, timeout=20)
        slow.transport.abort()


async def test_updates_broadcast_in_one_tick_reach_every_client(server, user, project):
    """Many changes made in one tick are framed once each and written to every client's
    transport in batches: every client ends with all of them."""
    from pycrdt import Text

    from collab.ws.wire import RawSocket

    async with (
        connect(server, project, "batch.txt", user.key) as a,
        connect(server, project, "batch.txt", user.key) as b,
    ):
        await asyncio.wait_for(a.synced.wait(), 10)
        await asyncio.wait_for(b.synced.wait(), 10)
        room = server.services.extra["rooms"].rooms[(project, "batch.txt")]
        # The default uvicorn protocol: the outbox writes frames to the transport.
        assert all(RawSocket.of(c.websocket) is not None for c in room.clients)
        text = room.doc.get("source", type=Text)
        for i in range(300):
            with room.doc.transaction():
                text.insert(len(text), f"{i},")
        expected = "".join(f"{i}," for i in range(300))
        await until(lambda: str(a.text) == expected and str(b.text) == expected)
