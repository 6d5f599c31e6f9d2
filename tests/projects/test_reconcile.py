"""A restarted server reconciles projects: nothing stays "running" with nothing behind
it. Rows of a process that still holds its liveness lock are left alone."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys

import asyncpg
import httpx
import websockets

from collab.projects.lifecycle import FAILED, ORPHANED, host_key
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


async def test_projects_of_a_killed_server_process_are_stopped_by_the_next_one(settings):
    """A real `collab serve` process runs a project and is SIGKILLed; the next server
    finds its lock gone and marks the project stopped."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLAB_")}
    env["COLLAB_SECRET"] = "test-secret"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "collab.cli", "serve", "--data-dir", str(settings.data_dir)),
        *("--database-url", str(settings.database_url), "--port", str(port)),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    db = await asyncpg.connect(settings.database_url)
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as client:
            for _ in range(300):
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            r = await client.post(
                "/api/auth/signup", json={"email": "k@example.com", "password": "a long password"}
            )
            assert r.status_code == 201, r.text
            key = (await client.post("/api/auth/keys", json={"name": "t"})).json()["key"]
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/ws", additional_headers={"Authorization": f"Bearer {key}"}
        ) as ws:
            await ws.send('{"id": 1, "query": {"projects": {"title": "t", "action": "start"}}}')
            project = json.loads(await ws.recv())["result"]["projects"]["project_id"]
            for _ in range(300):
                state = await db.fetchval(
                    "SELECT state FROM projects WHERE project_id = $1::text::uuid", project
                )
                if state == "running":
                    break
                await asyncio.sleep(0.05)
            assert state == "running"
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        assert (
            await db.fetchval(
                "SELECT state FROM projects WHERE project_id = $1::text::uuid", project
            )
            == "running"
        )
        async with serve(settings.replace(project_check_seconds=1)) as server:
            for _ in range(100):
                row = await server.services.pool.fetchrow(
                    "SELECT state, state_error FROM projects WHERE project_id = $1::text::uuid",
                    project,
                )
                if row["state"] == "stopped":
                    break
                await asyncio.sleep(0.1)
            assert dict(row) == {"state": "stopped", "state_error": ORPHANED}
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await db.close()


async def test_a_transition_nobody_carries_out_is_finished_as_a_stop(server, user):
    project = await new_project(server, user)
    lifecycle = server.services.extra["lifecycle"]
    pool = server.services.pool
    await pool.execute(
        "UPDATE projects SET state = 'starting', host = $2 WHERE project_id = $1",
        project,
        lifecycle.host,
    )
    await lifecycle.check()
    row = await pool.fetchrow(
        "SELECT state, state_error, host FROM projects WHERE project_id = $1", project
    )
    assert dict(row) == {"state": "stopped", "state_error": FAILED, "host": None}
