"""The `kernels` table: every member sees a kernel's status changes on a changefeed;
a stranger sees nothing; clients cannot write it; a restart marks stale rows stopped."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import UUID

from tests.conftest import make_user, serve, ws_connect
from tests.kernels.conftest import cells, notebook, put_notebook, text_of, wait_for


async def _events(ws: Any, feed: str, until_status: str, timeout: float = 60) -> list[str]:
    seen: list[str] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while until_status not in seen:
        left = deadline - asyncio.get_running_loop().time()
        msg = json.loads(await asyncio.wait_for(ws.conn.recv(), left))
        if msg.get("feed") == feed and msg.get("new_val"):
            seen.append(msg["new_val"]["status"])
    return seen


async def test_members_follow_kernel_status_on_the_kernels_changefeed(server, user, rooms, project):
    friend, stranger = await make_user(server), await make_user(server)
    await server.services.pool.execute(
        "INSERT INTO project_users (project_id, account_id, role) VALUES ($1, $2, 'collaborator')",
        project,
        UUID(friend.account_id),
    )
    doc = await put_notebook(rooms, project, "t.ipynb", notebook([("c", "print(1)")]))
    query = {"kernels": [{"project_id": None, "path": None, "status": None, "kernel_name": None}]}
    async with (
        ws_connect(server, friend.key) as watcher,
        ws_connect(server, stranger.key) as outsider,
        ws_connect(server, user.key) as ws,
    ):
        answer = await watcher.request({"query": query, "changes": True})
        assert answer["result"] == {"kernels": []}, answer
        feed = answer["feed"]
        other = await outsider.request({"query": query, "changes": True})
        args = {"project_id": str(project), "path": "t.ipynb"}
        await ws.call("kernel.execute", {**args, "cell_ids": ["c"]})
        await wait_for(lambda: text_of(cells(doc)["c"]) == "1\n", what="ran")
        await ws.call("kernel.shutdown", args)
        seen = await _events(watcher, feed, "stopped")
        assert seen[0] == "starting" and "idle" in seen and seen[-1] == "stopped", seen
        write = await ws.request(
            {
                "query": {
                    "kernels": {"project_id": str(project), "path": "t.ipynb", "status": "idle"}
                }
            }
        )
        assert "error" in write, write
        # The outsider's feed stays silent.
        assert other["result"] == {"kernels": []}
        with_timeout = asyncio.wait_for(outsider.conn.recv(), 0.5)
        try:
            unexpected = await with_timeout
        except TimeoutError:
            unexpected = None
        assert unexpected is None, unexpected
    row = await server.services.pool.fetchrow("SELECT status, kernel_name FROM kernels")
    assert dict(row) == {"status": "stopped", "kernel_name": "python3"}


async def test_a_restarted_server_marks_kernels_it_no_longer_runs_stopped(
    settings, user_factory=None
):
    async with serve(settings) as server:
        user = await make_user(server)
        from collab.projects import store

        project = await store.create_project(
            server.services.pool, settings.projects_dir, UUID(user.account_id)
        )
        await server.services.pool.execute(
            "INSERT INTO kernels (project_id, path, status) VALUES ($1, 'x.ipynb', 'busy')", project
        )
    async with serve(settings) as server:
        status = await server.services.pool.fetchval("SELECT status FROM kernels")
    assert status == "stopped"


async def test_a_second_server_on_the_database_never_marks_a_live_kernel_stopped(settings):
    """Two processes share the database: the second one's start (and its periodic
    reconcile) leave the first one's running kernel as it is, and mark stopped only
    rows of processes that have ended."""
    from collab.projects import store
    from tests.kernels.conftest import MemoryRooms

    async with serve(settings) as first:
        rooms = MemoryRooms()
        first.services.extra["rooms"] = rooms
        user = await make_user(first)
        project = await store.create_project(
            first.services.pool, settings.projects_dir, UUID(user.account_id)
        )
        doc = await put_notebook(rooms, project, "live.ipynb", notebook([("c", "print(7)")]))
        async with ws_connect(first, user.key) as ws:
            args = {"project_id": str(project), "path": "live.ipynb"}
            await ws.call("kernel.execute", {**args, "cell_ids": ["c"]})
            await wait_for(lambda: text_of(cells(doc)["c"]) == "7\n", what="ran")
        pool = first.services.pool
        await wait_for_status(pool, "live.ipynb", "idle")
        # A row left by a process that has ended (nobody holds its lock).
        await pool.execute(
            "INSERT INTO kernels (project_id, path, status, host) VALUES ($1, 'dead.ipynb', 'busy', 'gone')",
            project,
        )
        async with serve(settings) as second:
            assert await pool.fetchval("SELECT status FROM kernels WHERE path = 'live.ipynb'") == (
                "idle"
            )
            assert await pool.fetchval("SELECT status FROM kernels WHERE path = 'dead.ipynb'") == (
                "stopped"
            )
            await second.services.extra["kernels"].reconcile()
            assert await pool.fetchval("SELECT status FROM kernels WHERE path = 'live.ipynb'") == (
                "idle"
            )
            # The first process's liveness connection goes (as when it dies): the second's
            # next reconcile marks its kernel stopped.
            kernels = first.services.extra["kernels"]
            await kernels._liveness._holder.close()
            assert await second.services.extra["kernels"].reconcile() == 1
            assert await pool.fetchval("SELECT status FROM kernels WHERE path = 'live.ipynb'") == (
                "stopped"
            )
            # ...and when the first process notices, it says again what its kernel is.
            await kernels.reconcile()
            await wait_for_status(pool, "live.ipynb", "idle")


async def wait_for_status(pool: Any, path: str, status: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await pool.fetchval("SELECT status FROM kernels WHERE path = $1", path)
        if found == status:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{path}: status {found!r}, expected {status!r}")
        await asyncio.sleep(0.05)
