"""Two server processes on one database serve one document together."""

import asyncio

from tests.conftest import serve
from tests.sync.conftest import project_file
from tests.sync.yclient import connect, until


async def test_two_processes_serving_one_document_converge(settings, server, user, project):
    async with serve(settings) as other:
        async with (
            connect(server, project, "pair.txt", user.key) as a,
            connect(other, project, "pair.txt", user.key) as b,
        ):
            await asyncio.wait_for(a.synced.wait(), 10)
            await asyncio.wait_for(b.synced.wait(), 10)
            for i in range(30):
                a.text.insert(len(str(a.text)), f"<a{i}>")
                b.text.insert(0, f"<b{i}>")
                await asyncio.sleep(0.005)
            await a.wait_acked()
            await b.wait_acked()
            await until(lambda: str(a.text) == str(b.text) and len(str(a.text)) > 200)
            text = str(a.text)
            for i in range(30):
                assert text.count(f"<a{i}>") == 1 and text.count(f"<b{i}>") == 1
            # Server-side changes in one process reach clients of the other.
            room = await server.services.extra["rooms"].open(project, "pair.txt")
            try:
                with room.doc.transaction():
                    room.doc.get("source", type=type(a.text)).insert(0, "[server]")
            finally:
                await server.services.extra["rooms"].close(room)
            await until(lambda: str(b.text).startswith("[server]"))


async def test_two_processes_loading_one_file_at_once_do_not_duplicate(
    settings, server, user, project
):
    path = project_file(server, project, "readme.md")
    path.write_text("# Read me\n\nOnce.\n")
    async with serve(settings) as other:
        async with (
            connect(server, project, "readme.md", user.key) as a,
            connect(other, project, "readme.md", user.key) as b,
        ):
            await asyncio.wait_for(a.synced.wait(), 10)
            await asyncio.wait_for(b.synced.wait(), 10)
            await until(lambda: str(a.text) == str(b.text) == "# Read me\n\nOnce.\n")
            a.text.insert(len(str(a.text)), "Edited.\n")
            await until(lambda: str(b.text) == "# Read me\n\nOnce.\nEdited.\n")
        await asyncio.sleep(1)
        assert path.read_text() == "# Read me\n\nOnce.\nEdited.\n"


async def test_concurrent_cold_loads_in_two_processes_agree(settings, server, user, project):
    import nbformat
    from jupyter_ydoc import YNotebook

    path = project_file(server, project, "race.ipynb")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"print({i})") for i in range(5)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, path)
    async with serve(settings) as other:
        one, two = server.services.extra["rooms"], other.services.extra["rooms"]
        r1, r2 = await asyncio.gather(
            one.open(project, "race.ipynb"), two.open(project, "race.ipynb")
        )
        try:
            cells1 = YNotebook(r1.doc).get()["cells"]
            cells2 = YNotebook(r2.doc).get()["cells"]
            assert [c["source"] for c in cells1] == [f"print({i})" for i in range(5)]
            assert cells1 == cells2
            assert r1.doc.get_state() and r1.doc.get_update(r2.doc.get_state())[:1] == b"\x00"
        finally:
            await one.close(r1)
            await two.close(r2)


async def test_lost_listener_reconnects_and_catches_up(settings, server, user, project):
    async with serve(settings) as other:
        async with (
            connect(server, project, "relay.txt", user.key) as a,
            connect(other, project, "relay.txt", user.key) as b,
        ):
            await asyncio.wait_for(a.synced.wait(), 10)
            await asyncio.wait_for(b.synced.wait(), 10)
            listener = other.services.extra["rooms"]._listener
            pid = listener.get_server_pid()
            await server.services.pool.execute("SELECT pg_terminate_backend($1)", pid)
            a.text.insert(0, "while the listener was down")
            await a.wait_acked()
            await until(lambda: str(b.text) == "while the listener was down", timeout=20)
            assert other.services.extra["rooms"]._listener.get_server_pid() != pid
