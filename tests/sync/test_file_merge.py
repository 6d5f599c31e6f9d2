"""A file changed on disk (git pull, a program writing it) is merged three-way into the
live document: every acknowledged live edit survives, and so does every change made on
disk, however the two interleave."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import nbformat
from jupyter_ydoc import YNotebook
from pycrdt import Doc, Text

from collab.sync import kinds
from tests.conftest import serve
from tests.sync.conftest import project_file
from tests.sync.yclient import YClient, connect, until, until_equal


def rewrite(path: Path, change: Callable[[str], str]) -> None:
    """What a program editing the file does: read it, change it, write it back in
    place. Done again if the server's mirror replaced the file in between (then the
    change went to the replaced file and nobody would see it)."""
    while True:
        with open(path, "r+", encoding="utf-8") as fh:
            old = fh.read()
            fh.seek(0)
            fh.truncate()
            fh.write(change(old))
            inode = os.fstat(fh.fileno()).st_ino
        if path.stat().st_ino == inode:
            return


async def stored_text(server, kind: str):
    rows = await server.services.pool.fetch("SELECT data FROM yjs_updates ORDER BY seq")
    doc = Doc()
    for r in rows:
        doc.apply_update(r["data"])
    return kinds.content(doc, kind)


async def test_file_change_keeps_an_acknowledged_insert_elsewhere(server, user, project):
    # The reproduction from issue 8.
    path = project_file(server, project, "a.md")
    path.write_text("one\ntwo\n")
    async with connect(server, project, "a.md", user.key) as a:
        await asyncio.wait_for(a.synced.wait(), 10)
        a.text.insert(3, "XYZ")
        await a.wait_acked()
        path.write_text("one\ntwo!\n")
        await until(lambda: str(a.text) == "oneXYZ\ntwo!\n")
        await until(lambda: path.read_text() == "oneXYZ\ntwo!\n")
        await asyncio.sleep(1.5)  # a later watch or mirror pass changes nothing
        assert str(a.text) == "oneXYZ\ntwo!\n"
        assert path.read_text() == "oneXYZ\ntwo!\n"
    assert await stored_text(server, "text") == "oneXYZ\ntwo!\n"


async def test_text_rewritten_twenty_times_while_typing_loses_nothing(server, user, project):
    lines = ["typed:\n"] + [f"line {i}\n" for i in range(1, 21)]
    path = project_file(server, project, "log.md")
    path.write_text("".join(lines))
    stop = asyncio.Event()
    async with connect(server, project, "log.md", user.key) as a:
        await asyncio.wait_for(a.synced.wait(), 10)

        def end_of_first_line() -> int:
            text = str(a.text)
            return len(text[: text.index("\n")].encode("utf-8"))

        async def typist() -> str:
            typed = []
            for i in range(100_000):
                if stop.is_set():
                    break
                ch = "abcdefghijklmnopqrstuvwxyz"[i % 26]
                a.text.insert(end_of_first_line(), ch)
                typed.append(ch)
                await asyncio.sleep(0.02)
            return "".join(typed)

        typing = asyncio.create_task(typist())
        try:
            for k in range(1, 21):
                await asyncio.sleep(0.1 + 0.05 * (k % 5))

                def change(old: str, k: int = k) -> str:
                    return old.replace(f"line {k}\n", f"line {k} changed on disk\n")

                await asyncio.to_thread(rewrite, path, change)
        finally:
            stop.set()
            typed = await typing
        await a.wait_acked()
        expected = "typed:" + typed + "\n"
        expected += "".join(f"line {k} changed on disk\n" for k in range(1, 21))
        await until_equal(lambda: str(a.text), expected, timeout=30)
        await until_equal(path.read_text, expected, timeout=30)
    assert len(typed) > 20
    assert await stored_text(server, "text") == expected


def _nb_cells(nb) -> list[tuple[str, str]]:
    return [(c["id"], "".join(c["source"])) for c in nb["cells"]]


async def test_notebook_changed_on_disk_while_a_cell_is_typed_in_loses_nothing(
    server, user, project
):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("typed:", id="typing")] + [
        nbformat.v4.new_markdown_cell(f"cell {i}", id=f"c{i}") for i in range(1, 7)
    ]
    path = project_file(server, project, "work.ipynb")
    nbformat.write(nb, path)

    # What happens on disk, one rewrite at a time: (description, change to the cells).
    def set_source(cid: str, text: str):
        def change(cells):
            for c in cells:
                if c["id"] == cid:
                    c["source"] = text
            return cells

        return change

    def add_after(cid: str, new_id: str, text: str):
        def change(cells):
            at = [c["id"] for c in cells].index(cid) + 1
            cells.insert(at, nbformat.v4.new_code_cell(text, id=new_id))
            return cells

        return change

    def delete(cid: str):
        return lambda cells: [c for c in cells if c["id"] != cid]

    steps = [
        set_source("c2", "cell 2 changed"),
        add_after("c3", "n1", "new one"),
        delete("c4"),
        set_source("n1", "new one, edited"),
        add_after("typing", "n2", "right after the typed cell"),
        delete("c6"),
        set_source("c1", "cell 1 changed"),
        add_after("c5", "n3", "at the end"),
        delete("c2"),
        set_source("c5", "cell 5 changed"),
    ]
    stop = asyncio.Event()
    async with connect(server, project, "work.ipynb", user.key) as a:
        await asyncio.wait_for(a.synced.wait(), 10)
        ynb = YNotebook(a.doc)

        def typing_source():
            for ycell in ynb.ycells:
                if ycell["id"] == "typing":
                    return ycell["source"]
            raise AssertionError("the typed-in cell is gone")

        async def typist() -> str:
            typed = []
            for i in range(100_000):
                if stop.is_set():
                    break
                ch = "abcdefghijklmnopqrstuvwxyz"[i % 26]
                source = typing_source()
                source.insert(len(str(source).encode("utf-8")), ch)
                typed.append(ch)
                await asyncio.sleep(0.02)
            return "".join(typed)

        def apply_step(step) -> Callable[[str], str]:
            def change(old: str) -> str:
                current = nbformat.reads(old, as_version=4)
                current.cells = step(current.cells)
                return nbformat.writes(current)

            return change

        typing = asyncio.create_task(typist())
        try:
            for i, step in enumerate(steps):
                await asyncio.sleep(0.15 + 0.1 * (i % 3))
                await asyncio.to_thread(rewrite, path, apply_step(step))
        finally:
            stop.set()
            typed = await typing
        await a.wait_acked()
        expected = [
            ("typing", "typed:" + typed),
            ("n2", "right after the typed cell"),
            ("c1", "cell 1 changed"),
            ("c3", "cell 3"),
            ("n1", "new one, edited"),
            ("c5", "cell 5 changed"),
            ("n3", "at the end"),
        ]
        await until(lambda: _nb_cells(ynb.get()) == expected, timeout=30)

        def on_disk():
            with contextlib.suppress(Exception):
                return _nb_cells(nbformat.read(path, as_version=4))

        await until(lambda: on_disk() == expected, timeout=30)
        nbformat.validate(nbformat.read(path, as_version=4))
    assert len(typed) > 20
    assert _nb_cells(await stored_text(server, "notebook")) == expected


async def test_two_processes_merge_each_file_change_once_and_keep_both_typists(
    settings, server, user, project
):
    lines = ["a:\n", "b:\n"] + [f"line {i}\n" for i in range(1, 11)]
    path = project_file(server, project, "shared.md")
    path.write_text("".join(lines))
    stop = asyncio.Event()
    async with (
        serve(settings) as other,
        connect(server, project, "shared.md", user.key) as a,
        connect(other, project, "shared.md", user.key) as b,
    ):
        await asyncio.wait_for(a.synced.wait(), 10)
        await asyncio.wait_for(b.synced.wait(), 10)

        async def typist(client: YClient, line: int) -> str:
            typed = []
            for i in range(100_000):
                if stop.is_set():
                    break
                ch = "abcdefghijklmnopqrstuvwxyz"[i % 26]
                text = str(client.text)
                end = 0
                for _ in range(line + 1):
                    end = text.index("\n", end) + 1
                client.text.insert(len(text[: end - 1].encode("utf-8")), ch)
                typed.append(ch)
                await asyncio.sleep(0.03)
            return "".join(typed)

        typing = [asyncio.create_task(typist(a, 0)), asyncio.create_task(typist(b, 1))]
        try:
            for k in range(1, 11):
                await asyncio.sleep(0.2 + 0.1 * (k % 3))

                def change(old: str, k: int = k) -> str:
                    return old.replace(f"line {k}\n", f"line {k} changed on disk\n")

                await asyncio.to_thread(rewrite, path, change)
        finally:
            stop.set()
            typed_a, typed_b = [await t for t in typing]
        await a.wait_acked()
        await b.wait_acked()
        expected = f"a:{typed_a}\nb:{typed_b}\n"
        expected += "".join(f"line {k} changed on disk\n" for k in range(1, 11))
        await until(lambda: str(a.text) == str(b.text) == expected, timeout=30)
        await until(lambda: path.read_text() == expected, timeout=30)
    assert await stored_text(server, "text") == expected


async def test_deleted_file_is_not_an_edit_and_is_not_written_back(server, user, project):
    path = project_file(server, project, "gone.md")
    path.write_text("keep me\n")
    async with connect(server, project, "gone.md", user.key) as a:
        await asyncio.wait_for(a.synced.wait(), 10)
        path.unlink()
        a.text.insert(0, "and me\n")
        # The document is closed as deleted (tests/sync/test_relocate.py), not emptied.
        assert await asyncio.wait_for(asyncio.shield(a.closed), 20) == 4410
        assert str(a.text) == "and me\nkeep me\n"
        await asyncio.sleep(1.5)  # past the debounce and a watch pass
        assert not path.exists()


async def test_a_changed_file_that_cannot_be_read_is_not_overwritten(server, user, project):
    path = project_file(server, project, "bytes.md")
    path.write_text("text\n")
    async with connect(server, project, "bytes.md", user.key) as a:
        await asyncio.wait_for(a.synced.wait(), 10)
        garbage = b"\xff\xfe not utf-8 \x80"
        path.write_bytes(garbage)
        await asyncio.sleep(1.5)
        a.text.insert(0, "live ")
        await a.wait_acked()
        await asyncio.sleep(1.5)  # past the debounce and a watch pass
        assert path.read_bytes() == garbage
        assert str(a.text) == "live text\n"
        # Readable again: merged against the last base, then written.
        path.write_text("text, fixed\n")
        await until(lambda: str(a.text) == "live text, fixed\n")
        await until(lambda: path.read_text() == "live text, fixed\n")


async def test_unmirrored_edits_and_a_file_changed_while_closed_both_survive(server, user, project):
    path = project_file(server, project, "closed.md")
    path.write_text("first\nsecond\nthird\n")
    rooms = server.services.extra["rooms"]
    async with connect(server, project, "closed.md", user.key) as a:
        await asyncio.wait_for(a.synced.wait(), 10)
        a.text.insert(0, "0 ")
        await a.wait_acked()
        await until(lambda: path.read_text() == "0 first\nsecond\nthird\n")
    await until(lambda: not rooms.rooms)
    # An acknowledged update whose mirror write never happened (a crash)...
    pool = server.services.pool
    doc = Doc()
    for r in await pool.fetch("SELECT data FROM yjs_updates ORDER BY seq"):
        doc.apply_update(r["data"])
    state = doc.get_state()
    source = doc.get("source", type=Text)
    source.insert(len(str(source).encode("utf-8")), "fourth, typed\n")
    await pool.execute(
        "INSERT INTO yjs_updates (doc_id, data) SELECT doc_id, $1 FROM yjs_documents",
        doc.get_update(state),
    )
    # ...and a git pull that changed another line meanwhile.
    path.write_text("0 first\nSECOND\nthird\n")
    expected = "0 first\nSECOND\nthird\nfourth, typed\n"
    async with connect(server, project, "closed.md", user.key) as b:
        await asyncio.wait_for(b.synced.wait(), 10)
        assert str(b.text) == expected
        await until(lambda: path.read_text() == expected)
