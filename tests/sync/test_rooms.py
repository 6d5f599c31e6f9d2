"""The RoomManager interface that other packages (kernels, terminals) use, kinds by file
name, presence, and unloading."""

import asyncio
import json

import nbformat
from jupyter_ydoc import YNotebook
from pycrdt import Decoder, Encoder, Map

from tests.sync.conftest import project_file
from tests.sync.yclient import connect, until


async def test_server_side_notebook_change_is_stored_broadcast_and_mirrored(server, user, project):
    rooms = server.services.extra["rooms"]
    async with connect(server, project, "run.ipynb", user.key) as a:
        await asyncio.wait_for(a.synced.wait(), 10)
        room = await rooms.open(project, "run.ipynb")
        try:
            assert room.kind == "notebook" and room.path == "run.ipynb"
            assert room.project_id == project
            nb = YNotebook(room.doc)
            cell = nb.ycells[0]
            with room.doc.transaction():
                cell["source"].insert(0, "print('hi')")
                cell["execution_count"] = 1
                cell["outputs"].append(
                    Map({"output_type": "stream", "name": "stdout", "text": "hi\n"})
                )
            await room.stored()
            stored = await server.services.pool.fetchval(
                "SELECT count(*) FROM yjs_updates WHERE authors = '{}'"
            )
            assert stored >= 2  # the initial notebook and the server's change
        finally:
            await rooms.close(room)
        await until(lambda: YNotebook(a.doc).get()["cells"][0]["source"] == "print('hi')")
        path = project_file(server, project, "run.ipynb")

        def mirrored():
            try:
                on_disk = nbformat.read(path, as_version=4)
            except Exception:
                return False
            return on_disk.cells[0].outputs[:1] == [
                {"output_type": "stream", "name": "stdout", "text": "hi\n"}
            ]

        await until(mirrored)
    # Stored: a fresh load after the room unloads has it.
    await until(lambda: not rooms.rooms)
    room = await rooms.open(project, "run.ipynb")
    try:
        assert YNotebook(room.doc).get()["cells"][0]["execution_count"] == 1
    finally:
        await rooms.close(room)


async def test_terminal_documents_have_no_file(server, user, project):
    rooms = server.services.extra["rooms"]
    room = await rooms.open(project, "shell.term")
    try:
        assert room.kind == "terminal"
        assert list(room.doc.keys()) == []
    finally:
        await rooms.close(room)
    async with connect(server, project, "shell.term", user.key) as a:
        await asyncio.wait_for(a.synced.wait(), 10)
    await until(lambda: not rooms.rooms)
    assert not project_file(server, project, "shell.term").exists()


async def test_text_kind_is_ytext_source_and_open_joins_the_live_room(server, user, project):
    rooms = server.services.extra["rooms"]
    one, two = await asyncio.gather(rooms.open(project, "a.tex"), rooms.open(project, "a.tex"))
    try:
        assert one is two and one.kind == "text"
    finally:
        await rooms.close(one)
        await rooms.close(two)


def _presence(client_id: int, clock: int, state) -> bytes:
    enc = Encoder()
    enc.write_var_uint(1)
    enc.write_var_uint(client_id)
    enc.write_var_uint(clock)
    enc.write_var_string(json.dumps(state))
    return enc.to_bytes()


def _states(updates: list[bytes]) -> dict[int, object]:
    seen: dict[int, object] = {}
    for update in updates:
        dec = Decoder(update)
        for _ in range(dec.read_var_uint()):
            cid = dec.read_var_uint()
            dec.read_var_uint()
            raw = dec.read_var_string()
            seen[cid] = json.loads(raw) if raw else None
    return seen


async def test_presence_is_relayed_with_identity_and_removed_when_client_leaves(
    server, user, project
):
    async with connect(server, project, "p.txt", user.key) as a:
        await asyncio.wait_for(a.synced.wait(), 10)
        async with connect(server, project, "p.txt", user.key) as b:
            await asyncio.wait_for(b.synced.wait(), 10)
            await b.send_awareness(_presence(42, 1, {"user": {"name": "Mallory"}, "cursor": 3}))
            await until(lambda: 42 in _states(a.awareness))
            state = _states(a.awareness)[42]
            assert state == {
                "user": {"name": "Test User", "account_id": user.account_id},
                "cursor": 3,
            }
            # A different connection cannot change or remove b's client id.
            await a.send_awareness(_presence(42, 5, None))
            await a.send_awareness(_presence(42, 6, {"cursor": 99}))
            await asyncio.sleep(0.3)
            assert _states(a.awareness)[42] == state
        await until(lambda: _states(a.awareness).get(42, "x") is None)


async def test_presence_not_renewed_expires(settings):
    from uuid import UUID

    from collab.projects.store import create_project
    from tests.conftest import make_user, serve

    async with serve(settings.replace(sync_awareness_timeout_ms=500)) as server:
        user = await make_user(server)
        project = await create_project(
            server.services.pool, server.services.settings.projects_dir, UUID(user.account_id)
        )
        async with (
            connect(server, project, "p.txt", user.key) as a,
            connect(server, project, "p.txt", user.key) as b,
        ):
            await asyncio.wait_for(a.synced.wait(), 10)
            await asyncio.wait_for(b.synced.wait(), 10)
            await b.send_awareness(_presence(77, 1, {"cursor": 1}))
            await until(lambda: 77 in _states(a.awareness))
            # b stays connected but stops renewing: its presence goes.
            await until(lambda: _states(a.awareness).get(77, "x") is None, timeout=10)
