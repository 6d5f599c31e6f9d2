import asyncio

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
