"""Data loss is the worst bug: what the server acknowledged survives kill -9."""

import asyncio
import random
from uuid import UUID

import websockets

from collab.db.pool import connect as pg_connect
from collab.projects.store import create_project
from tests.sync.processes import ServerProcess, free_port, signup
from tests.sync.yclient import YClient, until, yjs_url

CLIENTS = 10


async def _typist(client: YClient, index: int, tokens: list[tuple[int, str]], stop: asyncio.Event):
    n = 0
    rng = random.Random(index)
    while not stop.is_set():
        token = f"<{index}:{n}>"
        client.text.insert(len(str(client.text)), token)
        tokens.append((client.sent_updates, token))
        n += 1
        await asyncio.sleep(rng.uniform(0.005, 0.03))


async def _join(server: ServerProcess, project: UUID, key: str, doc=None) -> YClient:
    conn = await websockets.connect(
        yjs_url(server, project, "essay.txt", key), max_size=None, open_timeout=10
    )
    client = YClient(conn, doc)
    await client.start()
    await asyncio.wait_for(client.synced.wait(), 15)
    return client


async def test_acknowledged_updates_survive_kill_9_and_clients_reconnect(db_url, tmp_path):
    server = ServerProcess(tmp_path / "data", db_url, free_port(), tmp_path / "server.log")
    await server.start()
    try:
        key, account_id = await signup(server.http, "typist@example.com")
        conn = await pg_connect(db_url)
        try:
            project = await create_project(
                conn, tmp_path / "data" / "projects", UUID(account_id), "essays"
            )
        finally:
            await conn.close()
        clients = [await _join(server, project, key) for _ in range(CLIENTS)]
        tokens: list[list[tuple[int, str]]] = [[] for _ in clients]
        stop = asyncio.Event()
        typing = [
            asyncio.create_task(_typist(c, i, tokens[i], stop)) for i, c in enumerate(clients)
        ]
        await until(lambda: all(c.acked >= 10 for c in clients), timeout=30)
        server.kill9()
        stop.set()
        await asyncio.gather(*typing)
        acked = [c.acked for c in clients]
        for c in clients:
            await asyncio.wait_for(c.closed, 10)
            await c.close()
        must_survive = [t for i, c in enumerate(clients) for idx, t in tokens[i] if idx <= acked[i]]
        assert len(must_survive) >= CLIENTS * 10

        await server.start()
        fresh = await _join(server, project, key)
        text = str(fresh.text)
        missing = [t for t in must_survive if t not in text]
        assert missing == []

        # The clients reconnect with their documents and send what the server lacks.
        rejoined = [await _join(server, project, key, doc=c.doc) for c in clients]
        every = [t for ts in tokens for _, t in ts]
        await until(lambda: all(t in str(fresh.text) for t in every), timeout=30)
        await until(lambda: all(str(c.text) == str(fresh.text) for c in rejoined), timeout=30)
        final = str(fresh.text)
        assert all(final.count(t) == 1 for t in every)
        for c in [*rejoined, fresh]:
            await c.close()
    finally:
        server.stop()


async def test_acknowledgement_waits_for_the_commit(server, user, project):
    from collab.sync.store import _LOCK_CLASS, lock_key
    from tests.sync.yclient import connect

    async with (
        connect(server, project, "acked.txt", user.key) as a,
        connect(server, project, "acked.txt", user.key) as b,
    ):
        await asyncio.wait_for(a.synced.wait(), 10)
        await asyncio.wait_for(b.synced.wait(), 10)
        await a.wait_acked()
        pool = server.services.pool
        doc_id = await pool.fetchval("SELECT doc_id FROM yjs_documents")
        before = await pool.fetchval("SELECT count(*) FROM yjs_updates")
        acked = a.acked
        # Hold the document's writer lock: the batch cannot commit meanwhile.
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1, $2)", _LOCK_CLASS, lock_key(doc_id)
            )
            a.text.insert(0, "pending")
            await until(lambda: str(b.text) == "pending")  # broadcast does not wait
            await asyncio.sleep(0.5)
            assert a.acked == acked
        await a.wait_acked()
        assert a.acked > acked
        assert await pool.fetchval("SELECT count(*) FROM yjs_updates") > before


async def test_shutdown_writes_files_and_flushes_the_log(settings, tmp_path):
    from collab.projects.store import create_project
    from tests.conftest import make_user, serve
    from tests.sync.yclient import connect

    slow_mirror = settings.replace(sync_mirror_debounce_ms=60_000, sync_unload_delay_ms=60_000)
    async with serve(slow_mirror) as server:
        user = await make_user(server)
        project = await create_project(
            server.services.pool, slow_mirror.projects_dir, UUID(user.account_id)
        )
        async with connect(server, project, "last.txt", user.key) as a:
            await asyncio.wait_for(a.synced.wait(), 10)
            a.text.insert(0, "written at shutdown")
            await a.wait_acked()
        path = slow_mirror.projects_dir / str(project) / "last.txt"
        assert not path.exists() or path.read_text() != "written at shutdown"
    assert path.read_text() == "written at shutdown"


async def test_an_acknowledged_update_waiting_for_its_dependency_survives_a_restart(
    settings, tmp_path
):
    """An update whose dependency has not arrived is held inside the CRDT, not integrated;
    it is acknowledged all the same, so it must be stored all the same."""
    from pycrdt import Doc, Text, create_update_message

    from collab.projects.store import create_project
    from tests.conftest import make_user, serve
    from tests.sync.yclient import connect

    author = Doc()
    text = author.get("source", type=Text)
    text.insert(0, "first ")
    first = author.get_update()
    state = author.get_state()
    text.insert(len(str(text)), "second")
    second = author.get_update(state)  # depends on `first`

    async with serve(settings) as server:
        user = await make_user(server)
        project = await create_project(
            server.services.pool, settings.projects_dir, UUID(user.account_id)
        )
        async with connect(server, project, "held.txt", user.key) as a:
            await asyncio.wait_for(a.synced.wait(), 10)
            await a.wait_acked()
            a.sent_updates += 1
            await a.conn.send(create_update_message(second))
            await a.wait_acked()
            assert str(a.text) == ""  # held: its dependency is missing
    async with (
        serve(settings) as server,
        connect(server, project, "held.txt", user.key) as reader,
        connect(server, project, "held.txt", user.key) as b,
    ):
        await asyncio.wait_for(reader.synced.wait(), 10)
        await asyncio.wait_for(b.synced.wait(), 10)
        b.sent_updates += 1
        await b.conn.send(create_update_message(first))
        await b.wait_acked()
        # The restarted server had the held update from its log: the dependency lets it in.
        await until(lambda: str(reader.text) == "first second")
