"""A restarted server reconciles projects: nothing stays "running" with nothing behind
it. Rows of a process that still holds its liveness lock are left alone."""

from __future__ import annotations

import asyncpg

from collab.projects.lifecycle import ORPHANED, host_key
from tests.conftest import make_user, serve, ws_connect
from tests.projects.conftest import new_project, put_notebook, subscribe


async def test_a_server_that_stops_marks_its_projects_stopped(settings):
    async with serve(settings) as server:
        user = await make_user(server)
        project = await new_project(server, user)
        put_notebook(server, project, "n.ipynb", "print(1)")
        async with ws_connect(server, user.key) as ws:
            answer = await ws.call(
                "kernel.execute", {"project_id": str(project), "path": "n.ipynb", "cell_ids": ["c"]}
            )
            assert "result" in answer, answer
        pool = server.services.pool
        assert await pool.fetchval("SELECT state FROM projects WHERE project_id = $1", project) == (
            "running"
        )
    conn = await asyncpg.connect(settings.database_url)
    try:
        row = await conn.fetchrow("SELECT state, host FROM projects WHERE project_id = $1", project)
    finally:
        await conn.close()
    assert dict(row) == {"state": "stopped", "host": None}


async def test_a_restarted_server_marks_projects_of_a_dead_process_stopped(settings):
    async with serve(settings) as server:
        user = await make_user(server)
        dead = await new_project(server, user)
        alive = await new_project(server, user)
        unowned = await new_project(server, user)
    # As a process that crashed leaves them: live states, its host id, its lock gone.
    # Another process is alive and holds its lock.
    holder = await asyncpg.connect(settings.database_url)
    await holder.execute("SELECT pg_advisory_lock($1)", host_key("other-live-process"))
    try:
        await holder.execute(
            "UPDATE projects SET state = 'running', host = 'crashed-process' WHERE project_id = $1",
            dead,
        )
        await holder.execute(
            "UPDATE projects SET state = 'running', host = 'other-live-process' "
            "WHERE project_id = $1",
            alive,
        )
        await holder.execute(
            "UPDATE projects SET state = 'stopping', host = NULL WHERE project_id = $1", unowned
        )
        async with serve(settings) as server:
            async with ws_connect(server, user.key) as ws:
                answer = await ws.request(
                    {
                        "query": {
                            "projects": [{"project_id": None, "state": None, "state_error": None}]
                        }
                    }
                )
            rows = {r["project_id"]: r for r in answer["result"]["projects"]}
            assert rows[str(dead)]["state"] == "stopped"
            assert rows[str(dead)]["state_error"] == ORPHANED
            assert rows[str(unowned)]["state"] == "stopped"
            assert rows[str(alive)]["state"] == "running"
            # When the other process ends, the next check reconciles its projects too,
            # and a member's feed sees it.
            async with ws_connect(server, user.key) as ws:
                feed = await subscribe(ws)
                await holder.close()
                await server.services.extra["lifecycle"].check()
                while True:
                    msg = await ws.recv()
                    new = msg.get("new_val") if msg.get("feed") == feed else None
                    if new and new["project_id"] == str(alive):
                        break
            assert new["state"] == "stopped" and new["state_error"] == ORPHANED
    finally:
        if not holder.is_closed():
            await holder.close()
