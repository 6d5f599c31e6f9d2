"""Files a sandboxed kernel writes are documents like any other: edited live through /yjs,
mirrored back to disk by the server, and still writable by the kernel afterwards (the
server keeps them the project user's)."""

from __future__ import annotations

import asyncio
import os
import pwd

from collab.sandbox import users
from tests.conftest import make_user
from tests.sandbox.conftest import new_project, project_dir, run_in_kernel, sandbox_server
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
