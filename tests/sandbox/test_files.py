"""Files a sandboxed kernel writes are documents like any other: edited live through /yjs,
mirrored back to disk by the server, and still writable by the kernel afterwards (the
server keeps them the project user's)."""

from __future__ import annotations

import asyncio
import os
import pwd

from collab.sandbox import users
from tests.conftest import make_user, ws_connect
from tests.sandbox.conftest import (
    new_project,
    project_dir,
    run_in_kernel,
    run_in_terminal,
    sandbox_server,
)
from tests.sync.yclient import connect, until

APPEND = "open('notes.md', 'a').write('from the kernel\\n')"


async def test_a_kernel_file_is_edited_live_and_stays_the_kernels_to_write() -> None:
    async with sandbox_server("bwrap", sync_mirror_debounce_ms=150) as server:
        user = await make_user(server)
        project = await new_project(server, user, "notes")
        notes = project_dir(server, project) / "notes.md"
        await run_in_kernel(server, user, project, APPEND, memory_rooms=False)
        await until(lambda: notes.exists() and notes.read_text() == "from the kernel\n", 60)
        async with connect(server, project, "notes.md", user.key) as client:
            await asyncio.wait_for(client.synced.wait(), 20)
            assert str(client.text) == "from the kernel\n"
            client.text.insert(len(str(client.text)), "edited live\n")
            await client.wait_acked()
            await until(lambda: notes.read_text() == "from the kernel\nedited live\n", 20)
            if os.geteuid() == 0:
                owner = pwd.getpwnam(users.username(project))
                assert (notes.stat().st_uid, notes.stat().st_gid) == (owner.pw_uid, owner.pw_gid)
            # The kernel writes the file the server replaced: no permission error, and
            # its line merges into the live document.
            await run_in_kernel(server, user, project, APPEND, memory_rooms=False)
            expected = "from the kernel\nedited live\nfrom the kernel\n"
            await until(lambda: str(client.text) == expected, 60)
            assert notes.read_text() == expected


async def test_files_the_server_makes_stay_writable_by_the_projects_code() -> None:
    """Uploads, new files and folders made in the browser after the project's sandbox
    first started belong to the project's user: its shell can append to them and make
    files in them."""
    async with sandbox_server("bwrap") as server:
        user = await make_user(server)
        project = await new_project(server, user, "uploads")
        folder = project_dir(server, project)
        await run_in_terminal(server, user, project, "touch started")
        await until(lambda: (folder / "started").exists(), 60)
        auth = {"Authorization": f"Bearer {user.key}"}
        async with server.client() as http:
            r = await http.put(
                f"/api/projects/{project}/upload/in/data.csv", content=b"1\n", headers=auth
            )
            assert r.status_code == 201
        async with ws_connect(server, user.key) as ws:
            for call, path in (("files.mkdir", "results"), ("files.create", "new/empty.txt")):
                r = await ws.call(call, {"project_id": str(project), "path": path})
                assert "result" in r, r
        await run_in_terminal(
            server,
            user,
            project,
            "echo 2 >> in/data.csv && touch results/out new/more && echo 3 >> new/empty.txt"
            " && touch all-done",
        )
        await until(lambda: (folder / "all-done").exists(), 60)
        assert (folder / "in" / "data.csv").read_text() == "1\n2\n"
        assert (folder / "results" / "out").exists() and (folder / "new" / "more").exists()
        assert (folder / "new" / "empty.txt").read_text() == "3\n"
        if os.geteuid() == 0:
            owner = pwd.getpwnam(users.username(project))
            for made in ("in", "in/data.csv", "results", "new", "new/empty.txt"):
                st = (folder / made).stat()
                assert (st.st_uid, st.st_gid) == (owner.pw_uid, owner.pw_gid), made
