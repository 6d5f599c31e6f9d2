"""The per-project network switch (members cannot turn it on; an admin can, and the
project's next kernel reaches the network), the `none` setting's explicit flag, and
deleting a project: its processes, OS user and files go."""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from collab.sandbox import users
from collab.sandbox.service import Sandbox, SandboxError
from tests.conftest import make_user, ws_connect
from tests.kernels.conftest import cells, text_of, wait_for
from tests.sandbox.conftest import (
    new_project,
    project_dir,
    run_in_kernel,
    run_in_terminal,
    sandbox_server,
    sandbox_settings,
)

pytestmark = pytest.mark.timeout(300)

CONNECT = (
    "import socket\n"
    "try:\n"
    "    socket.create_connection(('127.0.0.1', {port}), timeout=5).close(); print('reached')\n"
    "except OSError as e:\n"
    "    print('unreachable', type(e).__name__)\n"
)


async def test_members_cannot_allow_the_network_and_an_admin_can() -> None:
    async with sandbox_server("bwrap") as server:
        user = await make_user(server)
        project = await new_project(server, user)
        async with ws_connect(server, user.key) as ws:
            answer = await ws.request(
                {"query": {"projects": {"project_id": str(project), "network": True}}}
            )
            assert answer["error"]["code"] == "forbidden_field", answer
        code = CONNECT.format(port=server.port)
        await run_in_kernel(server, user, project, code, path="a.ipynb")
        rooms = server.services.extra["rooms"]
        doc = rooms.rooms[(project, "a.ipynb")].doc
        await wait_for(lambda: "unreachable" in text_of(cells(doc)["c"]), what="no network")
        from collab.sandbox.admin import set_network

        assert await set_network(server.services.pool, project, True)
        await run_in_kernel(server, user, project, code, path="b.ipynb")
        doc = rooms.rooms[(project, "b.ipynb")].doc
        await wait_for(lambda: "reached" in text_of(cells(doc)["c"]), what="network allowed")


def test_no_sandbox_needs_the_explicit_flag_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = sandbox_settings(tmp_path, "none").replace(sandbox_allow_none=False)
    with pytest.raises(SandboxError, match="sandbox_allow_none"):
        Sandbox(settings).start()
    with caplog.at_level(logging.WARNING):
        Sandbox(settings.replace(sandbox_allow_none=True)).start()
    assert any("NO SANDBOX" in r.getMessage() for r in caplog.records)
    with pytest.raises(SandboxError, match="bwrap"):
        Sandbox(settings.replace(sandbox="chroot")).start()


@pytest.mark.skipif(os.geteuid() != 0, reason="per-project users need root")
async def test_deleting_a_project_removes_its_processes_user_and_files() -> None:
    async with sandbox_server("bwrap") as server:
        user = await make_user(server)
        project = await new_project(server, user)
        other = await new_project(server, user)
        await run_in_terminal(server, user, project, "sleep 1000")
        await run_in_terminal(server, user, other, "sleep 1000")
        name = users.username(project)
        uid = await wait_for(lambda: _uid(name), what="project user")
        await wait_for(lambda: _processes(uid), what="project processes")
        folder = project_dir(server, project)
        data_dir = server.services.settings.data_dir
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "collab.cli", "project", "delete", str(project)],
            env={
                **os.environ,
                "COLLAB_DATA_DIR": str(data_dir),
                "COLLAB_DATABASE_URL": server.services.database_url,
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        await wait_for(lambda: not folder.exists(), what="files removed")
        await wait_for(lambda: _uid(name) is None, what="user removed")
        await wait_for(lambda: not _processes(uid), what="processes ended")
        terminals = server.services.extra["terminals"]
        await wait_for(lambda: terminals.get(project, "t.term") is None, what="terminal gone")
        # The other project is untouched.
        assert project_dir(server, other).exists()
        assert _uid(users.username(other)) is not None
        assert terminals.get(other, "t.term") is not None
        assert await server.services.pool.fetchval(
            "SELECT deleted FROM projects WHERE project_id = $1", project
        )


def _uid(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def _processes(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append(int(entry))
            except OSError:
                continue
    return found
