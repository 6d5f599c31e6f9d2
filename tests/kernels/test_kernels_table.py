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
