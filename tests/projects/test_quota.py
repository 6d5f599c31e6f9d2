"""Disk quota per project: checked on start and while running; over it, the state_error
says so and executions and new terminals are refused."""

from __future__ import annotations

import os

from collab.projects import store
from tests.conftest import make_user, serve, ws_connect
from tests.projects.conftest import new_project, put_notebook, states_until, subscribe

QUOTA = 1024 * 1024


def _fill(server, project, name: str, size: int) -> None:
    directory = store.project_dir(server.services.settings.projects_dir, project)
    (directory / name).write_bytes(os.urandom(size))


async def test_a_project_over_its_quota_does_not_start(settings):
    async with serve(settings.replace(project_disk_quota_bytes=QUOTA)) as server:
        user = await make_user(server)
        project = await new_project(server, user)
        _fill(server, project, "big.bin", 2 * QUOTA)
        put_notebook(server, project, "n.ipynb", "print(1)")
        async with ws_connect(server, user.key) as ws:
            feed = await subscribe(ws)
            await ws.request(
                {"query": {"projects": {"project_id": str(project), "action": "start"}}}
            )
            seen = await states_until(ws, feed, project, "stopped", since="stopped")
            assert [s["state"] for s in seen] == ["starting", "stopped"], seen
            assert seen[-1]["state_error"].startswith("disk quota exceeded"), seen
            answer = await ws.call(
                "kernel.execute", {"project_id": str(project), "path": "n.ipynb", "cell_ids": ["c"]}
            )
            assert answer["error"]["code"] == "over_quota", answer
            assert server.services.extra["kernels"].get(project, "n.ipynb") is None


async def test_a_running_project_that_grows_over_its_quota_is_reported(settings):
    async with serve(settings.replace(project_disk_quota_bytes=QUOTA)) as server:
        user = await make_user(server)
        project = await new_project(server, user)
        async with ws_connect(server, user.key) as ws:
            feed = await subscribe(ws)
            await ws.request(
                {"query": {"projects": {"project_id": str(project), "action": "start"}}}
            )
            await states_until(ws, feed, project, "running")
            _fill(server, project, "big.bin", 2 * QUOTA)
            await server.services.extra["lifecycle"].check()
            row = await server.services.pool.fetchrow(
                "SELECT state, state_error, disk_used FROM projects WHERE project_id = $1", project
            )
            assert row["state"] == "running"
            assert row["state_error"].startswith("disk quota exceeded")
            assert row["disk_used"] > QUOTA
            answer = await ws.call("terminal.open", {"project_id": str(project), "path": "t.term"})
            assert answer["error"]["code"] == "over_quota", answer
            # Freeing space clears the error at the next check.
            os.unlink(store.project_dir(server.services.settings.projects_dir, project) / "big.bin")
            await server.services.extra["lifecycle"].check()
            error = await server.services.pool.fetchval(
                "SELECT state_error FROM projects WHERE project_id = $1", project
            )
            assert error == ""
