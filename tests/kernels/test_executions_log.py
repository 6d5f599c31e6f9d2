"""The `executions` table: who ran what. A member's run makes a row with their account,
name and the source it ran, delivered live on the changefeed; a stranger sees nothing;
a member removed from the project stops receiving; clients cannot write it; each
notebook keeps its newest `kernel_executions_kept` rows."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import UUID

from tests.conftest import make_user, ws_connect
from tests.kernels.conftest import cells, notebook, put_notebook, text_of, wait_for

FIELDS = {
    "execution_id": None,
    "project_id": None,
    "path": None,
    "cell_id": None,
    "account_id": None,
    "name": None,
    "session": None,
    "kernel_name": None,
    "source": None,
    "status": None,
    "execution_count": None,
    "error": None,
    "requested": None,
    "started": None,
    "finished": None,
}
QUERY = {"executions": [FIELDS]}


async def _add(server: Any, project: UUID, account_id: str, role: str = "collaborator") -> None:
    await server.services.pool.execute(
        "INSERT INTO project_users (project_id, account_id, role) VALUES ($1, $2, $3)",
        project,
        UUID(account_id),
        role,
    )


async def _feed_rows(ws: Any, feed: str, until: Any, timeout: float = 60) -> list[dict[str, Any]]:
    """new_val rows of `feed` until until(rows) holds."""
    rows: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while not until(rows):
        left = deadline - asyncio.get_running_loop().time()
        msg = json.loads(await asyncio.wait_for(ws.conn.recv(), left))
        if msg.get("feed") == feed and msg.get("new_val"):
            rows.append(msg["new_val"])
    return rows


async def _silent(ws: Any, seconds: float = 1.0) -> Any:
    try:
        return json.loads(await asyncio.wait_for(ws.conn.recv(), seconds))
    except TimeoutError:
        return None


async def test_a_members_run_is_recorded_with_account_source_and_outcome_live(
    server, user, rooms, project
):
    ada = await make_user(server, name="Ada Lovelace")
    stranger = await make_user(server)
    await _add(server, project, ada.account_id)
    doc = await put_notebook(
        rooms, project, "t.ipynb", notebook([("a", "print(6*7)"), ("b", "1/0"), ("c", "2")])
    )
    args = {"project_id": str(project), "path": "t.ipynb"}
    async with (
        ws_connect(server, user.key) as watcher,
        ws_connect(server, stranger.key) as outsider,
        ws_connect(server, ada.key) as ws,
    ):
        answer = await watcher.request({"query": QUERY, "changes": True})
        assert answer["result"] == {"executions": []}, answer
        other = await outsider.request({"query": QUERY, "changes": True})
        assert other["result"] == {"executions": []}, other
        answer_run = await ws.call("kernel.execute", {**args, "cell_ids": ["a", "b", "c"]})
        assert answer_run["result"]["queued"] == ["a", "b", "c"], answer_run

        def finished(rows: list[dict[str, Any]]) -> bool:
            done = {r["cell_id"]: r for r in rows if r["finished"]}
            return set(done) == {"a", "b", "c"}

        rows = await _feed_rows(watcher, answer["feed"], finished)
        await wait_for(lambda: text_of(cells(doc)["a"]) == "42\n", what="ran")
        last = {r["cell_id"]: r for r in rows}
        a, b, c = last["a"], last["b"], last["c"]
        # The feed showed the run's life: queued, then running, then its outcome.
        a_states = [r["status"] for r in rows if r["cell_id"] == "a"]
        assert a_states[0] == "queued" and a_states[-1] == "ok", a_states
        assert "running" in a_states, a_states
        assert a["account_id"] == ada.account_id and a["name"] == "Ada Lovelace", a
        assert a["source"] == "print(6*7)" and a["kernel_name"] == "python3", a
        assert a["execution_count"] == 1 and a["session"], a
        assert a["project_id"] == str(project) and a["path"] == "t.ipynb", a
        assert a["started"] and a["requested"] <= a["started"] <= a["finished"], a
        assert b["status"] == "error" and b["error"].startswith("ZeroDivisionError"), b
        assert b["source"] == "1/0" and b["session"] == a["session"], b
        # After an error the rest of the queue is not run.
        assert c["status"] == "aborted" and c["started"] is None, c
        # Read-only for clients.
        write = await ws.request(
            {"query": {"executions": {"execution_id": a["execution_id"], "status": "ok"}}}
        )
        assert "error" in write, write
        # The stranger's feed stays silent, and a read shows nothing either.
        assert await _silent(outsider) is None
        again = await outsider.request({"query": QUERY})
        assert again["result"] == {"executions": []}, again
        mine = await watcher.request({"query": QUERY})
        assert len(mine["result"]["executions"]) == 3, mine


async def test_an_interrupted_run_and_a_restart_are_told_apart(server, user, rooms, project):
    doc = await put_notebook(
        rooms,
        project,
        "t.ipynb",
        notebook([("loop", "print('go', flush=True)\nwhile True: pass"), ("x", "1")]),
    )
    args = {"project_id": str(project), "path": "t.ipynb"}
    kernels = server.services.extra["kernels"]

    async def rows() -> list[Any]:
        await kernels.executions.drained()
        return await server.services.pool.fetch(
            "SELECT cell_id, status, session FROM executions ORDER BY seq"
        )

    async def run_x_until_ok() -> None:
        # ipykernel answers `aborted` to requests that arrive just after an error (its
        # stop-on-error window): that is recorded as such, and x is asked again.
        for _ in range(100):
            await ws.call("kernel.execute", {**args, "cell_ids": ["x"]})
            for _ in range(600):
                got = await rows()
                if got[-1]["status"] not in ("queued", "running"):
                    break
                await asyncio.sleep(0.1)
            if got[-1]["status"] == "ok":
                return
        raise AssertionError(got)

    async with ws_connect(server, user.key) as ws:
        await ws.call("kernel.execute", {**args, "cell_ids": ["loop"]})
        await wait_for(lambda: "go" in text_of(cells(doc)["loop"]), what="loop started")
        await ws.call("kernel.interrupt", args)
        await run_x_until_ok()
        await ws.call("kernel.restart", args)
        await run_x_until_ok()
    got = await rows()
    statuses = [r["status"] for r in got]
    assert statuses[0] == "interrupted" and statuses[-1] == "ok", statuses
    assert set(statuses[1:-1]) <= {"ok", "aborted"} and statuses.count("ok") == 2, statuses
    first_ok = statuses.index("ok")
    assert got[0]["session"] == got[first_ok]["session"], got
    # A restart is a new kernel session.
    assert got[-1]["session"] and got[-1]["session"] != got[0]["session"], got


async def test_a_removed_members_open_feed_stops_receiving(server, user, rooms, project):
    bob = await make_user(server, name="Bob")
    await _add(server, project, bob.account_id)
    doc = await put_notebook(rooms, project, "t.ipynb", notebook([("a", "1"), ("b", "2")]))
    args = {"project_id": str(project), "path": "t.ipynb"}
    async with ws_connect(server, bob.key) as bob_ws, ws_connect(server, user.key) as ws:
        answer = await bob_ws.request({"query": QUERY, "changes": True})
        feed = answer["feed"]
        await ws.call("kernel.execute", {**args, "cell_ids": ["a"]})
        rows = await _feed_rows(bob_ws, feed, lambda rs: any(r["status"] == "ok" for r in rs))
        assert rows[-1]["cell_id"] == "a", rows
        await server.services.pool.execute(
            "DELETE FROM project_users WHERE project_id = $1 AND account_id = $2",
            project,
            UUID(bob.account_id),
        )
        # The feed tells Bob the rows he may no longer see are gone (old_val only)...
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            msg = json.loads(
                await asyncio.wait_for(
                    bob_ws.conn.recv(), deadline - asyncio.get_running_loop().time()
                )
            )
            if msg.get("feed") == feed and msg.get("old_val", {}).get("cell_id") == "a":
                assert msg.get("new_val") is None, msg
                break
        # ...and then nothing of later runs reaches him.
        await ws.call("kernel.execute", {**args, "cell_ids": ["b"]})
        await wait_for(lambda: cells(doc)["b"].get("execution_count") == 2, what="b ran")
        await server.services.extra["kernels"].executions.drained()
        while (msg := await _silent(bob_ws, 2.0)) is not None:
            assert msg.get("feed") != feed or not msg.get("new_val"), msg
        count = await server.services.pool.fetchval("SELECT count(*) FROM executions")
        assert count == 2


async def test_each_notebook_keeps_its_newest_runs(server, user, rooms, project):
    object.__setattr__(server.services.extra["kernels"].executions, "_keep", 3)
    doc = await put_notebook(rooms, project, "t.ipynb", notebook([("a", "1")]))
    await put_notebook(rooms, project, "u.ipynb", notebook([("z", "0")]))
    args = {"project_id": str(project), "path": "t.ipynb"}
    async with ws_connect(server, user.key) as ws:
        await ws.call(
            "kernel.execute", {"project_id": str(project), "path": "u.ipynb", "cell_ids": ["z"]}
        )
        for n in range(1, 6):
            await ws.call("kernel.execute", {**args, "cell_ids": ["a"]})
            await wait_for(lambda n=n: cells(doc)["a"].get("execution_count") == n, what="ran")
        await server.services.extra["kernels"].executions.drained()
    counts = await server.services.pool.fetch(
        "SELECT path, array_agg(execution_count ORDER BY seq) AS counts FROM executions "
        "GROUP BY path ORDER BY path"
    )
    assert [(r["path"], r["counts"]) for r in counts] == [
        ("t.ipynb", [3, 4, 5]),
        ("u.ipynb", [1]),
    ], counts
