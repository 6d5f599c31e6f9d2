"""Deleting or renaming a file whose document is open: the room closes (4410 deleted,
4409 moved with the new path as reason), the file never comes back under the old name,
a moved document keeps its content and history, and nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from pycrdt import Doc, Text

from tests.conftest import serve, ws_connect
from tests.sync.conftest import project_file
from tests.sync.yclient import YClient, connect, until

DELETED, MOVED = 4410, 4409
# Past several mirror debounces (150 ms in these tests) and watcher polls (1 s).
QUIET = 2.5


async def _call(server: Any, key: str, name: str, args: dict[str, Any]) -> Any:
    async with ws_connect(server, key) as ws:
        answer = await ws.call(name, args)
    assert "result" in answer, answer
    return answer["result"]


async def _closed(client: YClient) -> tuple[int, str]:
    code = await asyncio.wait_for(asyncio.shield(client.closed), 20)
    return code, client.conn.close_reason


async def _synced(*clients: YClient) -> None:
    for c in clients:
        await asyncio.wait_for(c.synced.wait(), 10)


async def _doc(server: Any, project: UUID, path: str) -> tuple[int, str] | None:
    row = await server.services.pool.fetchrow(
        "SELECT doc_id, path FROM yjs_documents WHERE project_id = $1 AND path = $2",
        project,
        path,
    )
    return None if row is None else (row["doc_id"], row["path"])


async def _stored_text(server: Any, doc_id: int) -> str:
    rows = await server.services.pool.fetch(
        "SELECT data FROM yjs_updates WHERE doc_id = $1 ORDER BY seq", doc_id
    )
    doc = Doc()
    for r in rows:
        doc.apply_update(r["data"])
    return str(doc.get("source", type=Text))


async def _type_markers(client: YClient, stop: asyncio.Event, tag: str) -> int:
    """Insert numbered markers, one update each, until stopped or closed."""
    n = 0
    while not stop.is_set() and not client.closed.done():
        client.text.insert(len(str(client.text)), f"<{tag}{n}>")
        n += 1
        await asyncio.sleep(0.003)
    return n


def _acked_markers(client: YClient, tag: str) -> list[str]:
    # Message 1 is the reply to the server's step 1; marker k is message k + 2.
    return [f"<{tag}{k}>" for k in range(max(0, client.acked - 1))]


async def test_deleting_an_open_document_closes_it_and_the_file_stays_gone(server, user, project):
    file = project_file(server, project, "notes.txt")
    file.write_text("hello\n")
    async with (
        connect(server, project, "notes.txt", user.key) as a,
        connect(server, project, "notes.txt", user.key) as b,
    ):
        await _synced(a, b)
        a.text.insert(len(str(a.text)), "typed\n")
        await a.wait_acked()
        await until(lambda: file.read_text() == "hello\ntyped\n")
        doc_id, _ = await _doc(server, project, "notes.txt") or (0, "")
        assert await _call(
            server, user.key, "files.delete", {"project_id": str(project), "path": "notes.txt"}
        ) == {"deleted": "notes.txt"}
        assert await _closed(a) == (DELETED, "document deleted")
        assert await _closed(b) == (DELETED, "document deleted")
        # Edits made after the close never reach the server or the file.
        b.text.insert(0, "too late ")
        await asyncio.sleep(QUIET)
        assert not file.exists()
    # The history is kept under a tombstone name; the name starts a fresh document.
    assert await _doc(server, project, "notes.txt") is None
    tomb = await server.services.pool.fetchval(
        "SELECT path FROM yjs_documents WHERE doc_id = $1", doc_id
    )
    assert tomb == f"/deleted/{doc_id}/notes.txt"
    assert await _stored_text(server, doc_id) == "hello\ntyped\n"
    async with connect(server, project, "notes.txt", user.key) as fresh:
        await _synced(fresh)
        assert str(fresh.text) == ""


async def test_moving_an_open_document_follows_the_file_with_its_history(server, user, project):
    old = project_file(server, project, "draft.txt")
    old.write_text("first line\n")
    async with (
        connect(server, project, "draft.txt", user.key) as a,
        connect(server, project, "draft.txt", user.key) as b,
    ):
        await _synced(a, b)
        a.text.insert(len(str(a.text)), "second line\n")
        await a.wait_acked()
        await until(lambda: old.read_text() == "first line\nsecond line\n")
        doc_id, _ = await _doc(server, project, "draft.txt") or (0, "")
        seqs = await server.services.pool.fetchval(
            "SELECT count(*) FROM yjs_updates WHERE doc_id = $1", doc_id
        )
        result = await _call(
            server,
            user.key,
            "files.move",
            {"project_id": str(project), "path": "draft.txt", "to": "final/essay.txt"},
        )
        assert result == {"path": "final/essay.txt"}
        assert await _closed(a) == (MOVED, "final/essay.txt")
        assert await _closed(b) == (MOVED, "final/essay.txt")
        b.text.insert(0, "late ")
    new = project_file(server, project, "final/essay.txt")
    assert await _doc(server, project, "final/essay.txt") == (doc_id, "final/essay.txt")
    assert await _doc(server, project, "draft.txt") is None
    assert (
        await server.services.pool.fetchval(
            "SELECT count(*) FROM yjs_updates WHERE doc_id = $1", doc_id
        )
        >= seqs
    )
    # Reopened at the new name with the same document (as the browser does): its
    # history continues and an edit is mirrored to the new file only.
    async with connect(server, project, "final/essay.txt", user.key, doc=a.doc) as c:
        await _synced(c)
        assert str(c.text) == "first line\nsecond line\n"
        c.text.insert(len(str(c.text)), "third line\n")
        await c.wait_acked()
        await until(lambda: new.read_text() == "first line\nsecond line\nthird line\n")
        await asyncio.sleep(QUIET)
        assert not old.exists()


async def test_typing_while_the_document_moves_loses_nothing_acknowledged(server, user, project):
    project_file(server, project, "live.txt").write_text("")
    async with (
        connect(server, project, "live.txt", user.key) as a,
        connect(server, project, "live.txt", user.key) as b,
    ):
        await _synced(a, b)
        stop = asyncio.Event()
        typing = asyncio.create_task(_type_markers(b, stop, "b"))
        await asyncio.sleep(0.3)
        await _call(
            server,
            user.key,
            "files.move",
            {"project_id": str(project), "path": "live.txt", "to": "moved.txt"},
        )
        assert (await _closed(b))[0] == MOVED
        stop.set()
        typed = await typing
        acked = _acked_markers(b, "b")
        assert typed > 0 and acked
    doc_id, _ = await _doc(server, project, "moved.txt") or (0, "")
    stored = await _stored_text(server, doc_id)
    assert all(m in stored for m in acked)
    # What was refused comes with the client when it reopens at the new name.
    async with connect(server, project, "moved.txt", user.key, doc=b.doc) as again:
        await _synced(again)
        await again.wait_acked()
        everything = [f"<b{k}>" for k in range(typed)]
        stored = await _stored_text(server, doc_id)
        assert all(m in stored for m in everything)
        moved = project_file(server, project, "moved.txt")
        await until(lambda: all(m in moved.read_text() for m in everything))
    await asyncio.sleep(QUIET)
    assert not project_file(server, project, "live.txt").exists()


async def test_typing_while_the_document_is_deleted_keeps_acknowledged_edits_in_its_history(
    server, user, project
):
    file = project_file(server, project, "gone.txt")
    file.write_text("")
    async with connect(server, project, "gone.txt", user.key) as b:
        await _synced(b)
        doc_id, _ = await _doc(server, project, "gone.txt") or (0, "")
        stop = asyncio.Event()
        typing = asyncio.create_task(_type_markers(b, stop, "b"))
        await asyncio.sleep(0.3)
        await _call(
            server, user.key, "files.delete", {"project_id": str(project), "path": "gone.txt"}
        )
        assert (await _closed(b))[0] == DELETED
        stop.set()
        await typing
        acked = _acked_markers(b, "b")
        assert acked
        await asyncio.sleep(QUIET)
        assert not file.exists()
    stored = await _stored_text(server, doc_id)
    assert all(m in stored for m in acked)


async def test_folder_move_and_delete_close_the_documents_inside(server, user, project):
    for name in ("dir/a.txt", "dir/sub/b.txt"):
        f = project_file(server, project, name)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"{name}\n")
    async with (
        connect(server, project, "dir/a.txt", user.key) as a,
        connect(server, project, "dir/sub/b.txt", user.key) as b,
    ):
        await _synced(a, b)
        a.text.insert(0, "A: ")
        await a.wait_acked()
        await _call(
            server,
            user.key,
            "files.move",
            {"project_id": str(project), "path": "dir", "to": "dir2"},
        )
        assert await _closed(a) == (MOVED, "dir2/a.txt")
        assert await _closed(b) == (MOVED, "dir2/sub/b.txt")
    async with (
        connect(server, project, "dir2/a.txt", user.key, doc=a.doc) as a2,
        connect(server, project, "dir2/sub/b.txt", user.key) as b2,
    ):
        await _synced(a2, b2)
        assert str(a2.text) == "A: dir/a.txt\n"
        assert str(b2.text) == "dir/sub/b.txt\n"
        await until(lambda: project_file(server, project, "dir2/a.txt").read_text() == str(a2.text))
        await _call(server, user.key, "files.delete", {"project_id": str(project), "path": "dir2"})
        assert (await _closed(a2))[0] == DELETED
        assert (await _closed(b2))[0] == DELETED
        a2.text.insert(0, "late ")
    await asyncio.sleep(QUIET)
    assert not project_file(server, project, "dir").exists()
    assert not project_file(server, project, "dir2").exists()


async def test_delete_closes_the_room_in_another_process(settings, server, user, project):
    file = project_file(server, project, "shared.txt")
    file.write_text("shared\n")
    async with serve(settings) as other:
        async with (
            connect(server, project, "shared.txt", user.key) as a,
            connect(other, project, "shared.txt", user.key) as b,
        ):
            await _synced(a, b)
            await _call(
                server,
                user.key,
                "files.delete",
                {"project_id": str(project), "path": "shared.txt"},
            )
            assert (await _closed(a))[0] == DELETED
            assert (await _closed(b))[0] == DELETED
            b.text.insert(0, "late ")
            await asyncio.sleep(QUIET)
            assert not file.exists()


async def test_a_file_removed_by_another_program_is_not_written_back(server, user, project):
    file = project_file(server, project, "temp.txt")
    file.write_text("scratch\n")
    async with connect(server, project, "temp.txt", user.key) as a:
        await _synced(a)
        doc_id, _ = await _doc(server, project, "temp.txt") or (0, "")
        file.unlink()  # rm in a terminal
        a.text.insert(0, "edit ")  # the next edit used to write the file back
        assert (await _closed(a))[0] == DELETED
        await asyncio.sleep(QUIET)
        assert not file.exists()
    # Nothing the client had acknowledged is lost: it is in the tombstone's history.
    stored = await _stored_text(server, doc_id)
    assert stored in ("scratch\n", "edit scratch\n")
    assert await _doc(server, project, "temp.txt") is None


async def test_a_file_renamed_by_another_program_does_not_reappear(server, user, project):
    file = project_file(server, project, "old.txt")
    file.write_text("content\n")
    async with connect(server, project, "old.txt", user.key) as a:
        await _synced(a)
        file.rename(project_file(server, project, "new.txt"))  # mv in a terminal
        a.text.insert(0, "x")
        assert (await _closed(a))[0] == DELETED
        await asyncio.sleep(QUIET)
        assert not file.exists()
    async with connect(server, project, "new.txt", user.key) as n:
        await _synced(n)
        assert str(n.text) == "content\n"


async def test_a_move_onto_a_name_with_a_stale_document_takes_the_name(server, user, project):
    # A document whose file was deleted while no server ran keeps its rows at the name.
    async with connect(server, project, "target.txt", user.key) as t:
        await _synced(t)
        t.text.insert(0, "stale")
        await t.wait_acked()
    target = project_file(server, project, "target.txt")
    await until(lambda: target.exists() and target.read_text() == "stale")
    await asyncio.sleep(1)  # the room unloads (300 ms in these tests)
    target.unlink()
    stale_id, _ = await _doc(server, project, "target.txt") or (0, "")
    project_file(server, project, "src.txt").write_text("fresh\n")
    async with connect(server, project, "src.txt", user.key) as s:
        await _synced(s)
        await _call(
            server,
            user.key,
            "files.move",
            {"project_id": str(project), "path": "src.txt", "to": "target.txt"},
        )
        assert await _closed(s) == (MOVED, "target.txt")
    async with connect(server, project, "target.txt", user.key) as n:
        await _synced(n)
        assert str(n.text) == "fresh\n"
    assert await _stored_text(server, stale_id) == "stale"
    assert (
        await server.services.pool.fetchval(
            "SELECT path FROM yjs_documents WHERE doc_id = $1", stale_id
        )
        == f"/deleted/{stale_id}/target.txt"
    )


async def test_move_closes_the_room_in_another_process_and_the_old_name_stays_gone(
    settings, server, user, project
):
    old = project_file(server, project, "there.txt")
    old.write_text("there\n")
    async with serve(settings) as other:
        async with connect(other, project, "there.txt", user.key) as b:
            await _synced(b)
            b.text.insert(len(str(b.text)), "typed elsewhere\n")
            await b.wait_acked()
            await _call(
                server,
                user.key,
                "files.move",
                {"project_id": str(project), "path": "there.txt", "to": "here.txt"},
            )
            assert await _closed(b) == (MOVED, "here.txt")
            b.text.insert(0, "late ")
            await asyncio.sleep(QUIET)
            assert not old.exists()
        async with connect(server, project, "here.txt", user.key) as n:
            await _synced(n)
            assert str(n.text) == "there\ntyped elsewhere\n"
