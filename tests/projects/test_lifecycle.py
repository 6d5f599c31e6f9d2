"""Project lifecycle through the projects table: a member sets `action`, every member
sees starting → running → stopping → stopped on the changefeed; stopping ends the
project's kernels and terminals; bad requests and strangers are refused."""

from __future__ import annotations

import asyncio
from uuid import UUID

from tests.conftest import make_user, ws_connect
from tests.projects.conftest import new_project, put_notebook, states_until, subscribe, wait_until


def _set(project: UUID, action: object) -> dict[str, object]:
    return {"query": {"projects": {"project_id": str(project), "action": action}}}


async def test_start_stop_restart_through_a_table_set_reach_another_members_feed(server, user):
    friend = await make_user(server)
    project = await new_project(server, user, friend)
    async with ws_connect(server, user.key) as ws, ws_connect(server, friend.key) as watcher:
        feed = await subscribe(watcher)
        answer = await ws.request(_set(project, "start"))
        assert answer["result"]["projects"]["action"] == "start", answer
        seen = await states_until(watcher, feed, project, "running")
        assert [s["state"] for s in seen] == ["starting", "running"], seen
        assert seen[-1]["action"] is None and seen[-1]["state_error"] == ""
        assert seen[-1]["state_changed"] >= seen[0]["state_changed"]

        await ws.request(_set(project, "stop"))
        seen = await states_until(watcher, feed, project, "stopped")
        assert [s["state"] for s in seen] == ["stopping", "stopped"], seen

        # A stop of a stopped project changes nothing but clears the request.
        await ws.request(_set(project, "stop"))
        await ws.request(_set(project, "restart"))
        seen = await states_until(watcher, feed, project, "running")
        assert [s["state"] for s in seen] == ["starting", "running"], seen

        await ws.request(_set(project, "restart"))
        seen = await states_until(watcher, feed, project, "running", since="running")
        states = [s["state"] for s in seen]
        assert states == ["stopping", "stopped", "starting", "running"], seen
    row = await server.services.pool.fetchrow(
        "SELECT state, action, host FROM projects WHERE project_id = $1", project
    )
    assert row["state"] == "running" and row["action"] is None
    assert row["host"] == server.services.extra["lifecycle"].host


async def test_creating_a_project_with_an_action_starts_it(server, user):
    async with ws_connect(server, user.key) as ws:
        feed = await subscribe(ws)
        answer = await ws.request({"query": {"projects": {"title": "t", "action": "start"}}})
        project = UUID(answer["result"]["projects"]["project_id"])
        seen = await states_until(ws, feed, project, "running")
    assert seen[-1]["state"] == "running"


async def test_bad_actions_and_strangers_are_refused(server, user):
    stranger = await make_user(server)
    project = await new_project(server, user)
    async with ws_connect(server, user.key) as ws, ws_connect(server, stranger.key) as other:
        for bad in ("explode", "", "START", 5, True, ["start"], {"a": 1}, "x" * 100):
            answer = await ws.request(_set(project, bad))
            assert answer["error"]["code"] in ("bad_value", "bad_query"), (bad, answer)
        answer = await ws.request(_set(project, "explode"))
        assert answer["error"]["code"] == "bad_value"
        assert "start, stop, restart" in answer["error"]["message"]
        answer = await other.request(_set(project, "start"))
        assert answer["error"]["code"] == "forbidden", answer
        answer = await other.call(
            "kernel.execute", {"project_id": str(project), "path": "n.ipynb", "cell_ids": ["c"]}
        )
        assert answer["error"]["code"] == "forbidden", answer
        answer = await other.call("terminal.open", {"project_id": str(project), "path": "t.term"})
        assert answer["error"]["code"] == "forbidden", answer
        answer = await ws.request(
            {"query": {"projects": {"project_id": str(project), "state": "running"}}}
        )
        assert answer["error"]["code"] == "forbidden_field", answer
    row = await server.services.pool.fetchrow(
        "SELECT state, action FROM projects WHERE project_id = $1", project
    )
    assert dict(row) == {"state": "stopped", "action": None}


async def test_executing_in_a_stopped_project_starts_it_and_stop_ends_kernels_and_terminals(
    server, user
):
    friend = await make_user(server)
    project = await new_project(server, user, friend)
    put_notebook(server, project, "n.ipynb", "print(1)")
    kernels = server.services.extra["kernels"]
    terminals = server.services.extra["terminals"]
    async with ws_connect(server, user.key) as ws, ws_connect(server, friend.key) as watcher:
        feed = await subscribe(watcher)
        args = {"project_id": str(project), "path": "n.ipynb"}
        answer = await ws.call("kernel.execute", {**args, "cell_ids": ["c"]})
        assert answer["result"]["queued"] == ["c"], answer
        seen = await states_until(watcher, feed, project, "running")
        assert [s["state"] for s in seen] == ["starting", "running"]
        session = kernels.get(project, "n.ipynb")
        assert session is not None

        async def idle() -> bool:
            return session.status == "idle"

        await wait_until(idle, what="kernel idle")
        answer = await ws.call("terminal.open", {"project_id": str(project), "path": "t.term"})
        assert "terminal" in answer["result"], answer
        terminal = terminals.get(project, "t.term")
        assert terminal is not None and terminal.alive

        await ws.request(_set(project, "stop"))
        seen = await states_until(watcher, feed, project, "stopped")
        assert [s["state"] for s in seen] == ["stopping", "stopped"]
        assert kernels.get(project, "n.ipynb") is None
        assert terminals.get(project, "t.term") is None
        assert session.status in ("stopped", "dead"), session.status

        async def exited() -> bool:
            return not terminal.alive

        await wait_until(exited, what="terminal exit")
        status = await server.services.pool.fetchval(
            "SELECT status FROM kernels WHERE project_id = $1", project
        )
        assert status == "stopped"
        # Opening a terminal starts the project again.
        answer = await ws.call("terminal.open", {"project_id": str(project), "path": "t.term"})
        assert "terminal" in answer["result"], answer
        seen = await states_until(watcher, feed, project, "running")
        assert [s["state"] for s in seen] == ["starting", "running"]


async def test_an_idle_project_stops_itself(settings, tmp_path):
    from tests.conftest import serve

    quick = settings.replace(project_idle_seconds=1, project_check_seconds=1)
    async with serve(quick) as server:
        user = await make_user(server)
        project = await new_project(server, user)
        async with ws_connect(server, user.key) as ws:
            feed = await subscribe(ws)
            await ws.request(_set(project, "start"))
            await states_until(ws, feed, project, "running")
            seen = await states_until(ws, feed, project, "stopped", timeout=30)
        assert [s["state"] for s in seen] == ["stopping", "stopped"]


async def test_a_busy_kernel_keeps_an_idle_project_running(settings):
    from tests.conftest import serve

    quick = settings.replace(project_idle_seconds=1, project_check_seconds=1)
    async with serve(quick) as server:
        user = await make_user(server)
        project = await new_project(server, user)
        put_notebook(server, project, "n.ipynb", "import time\ntime.sleep(4)\nprint('done')")
        pool = server.services.pool
        async with ws_connect(server, user.key) as ws:
            feed = await subscribe(ws)
            args = {"project_id": str(project), "path": "n.ipynb", "cell_ids": ["c"]}
            answer = await ws.call("kernel.execute", args)
            assert answer["result"]["queued"] == ["c"], answer
            session = server.services.extra["kernels"].get(project, "n.ipynb")

            async def running_and_busy() -> bool:
                return session.status == "busy"

            await wait_until(running_and_busy, what="cell running")
            # Checks for over twice the idle time pass while the cell runs; it stays up.
            for _ in range(3):
                await asyncio.sleep(0.8)
                await server.services.extra["lifecycle"].check()
                state = await pool.fetchval(
                    "SELECT state FROM projects WHERE project_id = $1", project
                )
                assert state == "running"
            seen = await states_until(ws, feed, project, "stopped", timeout=30)
            assert [s["state"] for s in seen] == ["stopping", "stopped"]
        assert session.status in ("stopped", "dead")


async def test_document_edits_keep_an_idle_project_running(settings):
    from tests.conftest import serve
    from tests.sync.yclient import connect

    quick = settings.replace(project_idle_seconds=2, project_check_seconds=1)
    async with serve(quick) as server:
        user = await make_user(server)
        project = await new_project(server, user)
        pool = server.services.pool
        async with ws_connect(server, user.key) as ws:
            feed = await subscribe(ws)
            await ws.request(_set(project, "start"))
            await states_until(ws, feed, project, "running")
            async with connect(server, project, "notes.txt", user.key) as editor:
                await asyncio.wait_for(editor.synced.wait(), 10)
                # Edits for twice the idle time, with checks running all along.
                for i in range(8):
                    editor.text.insert(len(str(editor.text)), str(i))
                    await editor.wait_acked()
                    await asyncio.sleep(0.5)
                    await server.services.extra["lifecycle"].check()
                    state = await pool.fetchval(
                        "SELECT state FROM projects WHERE project_id = $1", project
                    )
                    assert state == "running", i
            seen = await states_until(ws, feed, project, "stopped", timeout=30)
        assert [s["state"] for s in seen] == ["stopping", "stopped"]
