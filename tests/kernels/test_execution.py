"""Execution through /ws: outputs land in the notebook document for every viewer."""

from __future__ import annotations

import asyncio
import time

from collab.kernels.outputs import IDLE, NOT_RUN
from tests.conftest import make_user, ws_connect
from tests.kernels.conftest import (
    cells,
    kernel_state,
    notebook,
    put_notebook,
    states,
    text_of,
    viewer,
    wait_for,
)


async def test_two_clients_see_the_outputs_of_a_cell_one_of_them_ran(server, user, rooms, project):
    doc = await put_notebook(rooms, project, "a.ipynb", notebook([("c1", "print('hello')\n6*7")]))
    mine, theirs = viewer(doc), viewer(doc)
    async with ws_connect(server, user.key) as ws:
        answer = await ws.call(
            "kernel.execute", {"project_id": str(project), "path": "a.ipynb", "cell_ids": ["c1"]}
        )
        assert answer["result"]["queued"] == ["c1"]
        for replica in (mine, theirs):
            cell = await wait_for(
                lambda r=replica: cells(r)["c1"]["outputs"][1:] and cells(r)["c1"], what="outputs"
            )
            assert text_of(cell) == "hello\n"
            assert cell["outputs"][1]["data"]["text/plain"] == "42"
            assert cell["execution_count"] == 1
        await wait_for(lambda: states(theirs)["c1"] == IDLE)
        assert kernel_state(theirs)["status"] in ("idle", "busy")


async def test_a_run_finishes_and_is_stored_after_the_requesting_client_disconnects(
    server, user, rooms, project
):
    src = "import time\ntime.sleep(1.5)\nprint('finished')"
    doc = await put_notebook(rooms, project, "b.ipynb", notebook([("c1", src), ("c2", "print(2)")]))
    async with ws_connect(server, user.key) as ws:
        answer = await ws.call(
            "kernel.execute",
            {"project_id": str(project), "path": "b.ipynb", "cell_ids": ["c1", "c2"]},
        )
        assert answer["result"]["queued"] == ["c1", "c2"]
    # The client is gone; the server still owns the run.
    await wait_for(lambda: text_of(cells(doc)["c2"]) == "2\n", what="second cell output")
    assert text_of(cells(doc)["c1"]) == "finished\n"


async def test_a_collaborator_runs_a_cell_and_a_stranger_is_forbidden(server, user, rooms, project):
    await put_notebook(rooms, project, "c.ipynb", notebook([("c1", "1")]))
    friend, stranger = await make_user(server), await make_user(server)
    await server.services.pool.execute(
        "INSERT INTO project_users (project_id, account_id, role) VALUES ($1, $2, 'collaborator')",
        project,
        __import__("uuid").UUID(friend.account_id),
    )
    args = {"project_id": str(project), "path": "c.ipynb", "cell_ids": ["c1"]}
    async with ws_connect(server, friend.key) as ws:
        assert (await ws.call("kernel.execute", args))["result"]["queued"] == ["c1"]
    async with ws_connect(server, stranger.key) as ws:
        for name, extra in [
            ("kernel.execute", {"cell_ids": ["c1"]}),
            ("kernel.interrupt", {}),
            ("kernel.restart", {}),
            ("kernel.shutdown", {}),
            ("kernel.status", {}),
            ("kernel.input", {"value": "x"}),
        ]:
            answer = await ws.call(name, {"project_id": str(project), "path": "c.ipynb", **extra})
            assert answer["error"]["code"] == "forbidden", (name, answer)


async def test_an_error_drops_the_queued_cells_as_not_run(server, user, rooms, project):
    nb = notebook([("c1", "raise ValueError('no')"), ("c2", "print('skipped')")])
    doc = await put_notebook(rooms, project, "d.ipynb", nb)
    async with ws_connect(server, user.key) as ws:
        await ws.call(
            "kernel.execute",
            {"project_id": str(project), "path": "d.ipynb", "cell_ids": ["c1", "c2"]},
        )
        await wait_for(lambda: states(doc)["c2"] == NOT_RUN, what="c2 not run")
        c1 = cells(doc)["c1"]
        assert c1["outputs"][0]["output_type"] == "error"
        assert c1["outputs"][0]["ename"] == "ValueError"
        assert cells(doc)["c2"]["outputs"] == []
        status = await ws.call("kernel.status", {"project_id": str(project), "path": "d.ipynb"})
        assert status["result"]["queued"] == []
        await asyncio.sleep(0)


async def test_a_run_asked_for_after_the_error_showed_is_not_dropped_with_the_queue(
    server, user, rooms, project
):
    """A failed run drops only the runs queued before its error reached the document:
    one asked for once the traceback showed is someone's answer to it, and runs. (The
    cell shows a traceback, then fails for good 2 s later: the window a fast user's
    Shift-Enter, or a test's next call, falls into when an error ends a cell at once.)"""
    late_failure = (
        "try:\n    1 / 0\nexcept ZeroDivisionError:\n    get_ipython().showtraceback()\n"
        "import time\ntime.sleep(2)\nraise ValueError('late')"
    )
    nb = notebook([("bad", late_failure), ("before", "print('b')"), ("after", "print('a')")])
    doc = await put_notebook(rooms, project, "late.ipynb", nb)
    args = {"project_id": str(project), "path": "late.ipynb"}
    async with ws_connect(server, user.key) as ws:
        await ws.call("kernel.execute", {**args, "cell_ids": ["bad", "before"]})
        await wait_for(
            lambda: any(o["output_type"] == "error" for o in cells(doc)["bad"]["outputs"]),
            what="the first traceback",
        )
        assert states(doc)["bad"] == "running"
        await ws.call("kernel.execute", {**args, "cell_ids": ["after"]})
        await wait_for(lambda: text_of(cells(doc)["after"]) == "a\n", what="after ran")
        assert states(doc)["before"] == NOT_RUN
        assert cells(doc)["before"]["outputs"] == []
        enames = [o.get("ename") for o in cells(doc)["bad"]["outputs"]]
        assert enames == ["ZeroDivisionError", "ValueError"], enames


async def test_the_queue_in_the_document_is_the_order_runs_were_asked_for(
    server, user, rooms, project
):
    """Every browser shows a queued cell's real place: cells run in the order they were
    asked for (here the last cell first), and the document's `kernel.queue` says so."""
    nb = notebook(
        [
            ("gate", "import time\ntime.sleep(1.5)"),
            ("a", "print('a')"),
            ("b", "print('b')"),
            ("c", "time.sleep(1)\nprint('c')"),
            ("boom", "raise ValueError('stop')"),
            ("never", "print('never')"),
        ]
    )
    doc = await put_notebook(rooms, project, "q.ipynb", nb)
    theirs = viewer(doc)
    args = {"project_id": str(project), "path": "q.ipynb"}
    async with ws_connect(server, user.key) as ws:
        await ws.call("kernel.execute", {**args, "cell_ids": ["gate"]})
        await wait_for(lambda: states(theirs)["gate"] == "running", what="gate running")
        for cell_id in ("c", "a", "b"):
            await ws.call("kernel.execute", {**args, "cell_ids": [cell_id]})
        assert kernel_state(theirs)["queue"] == ["c", "a", "b"]
        status = await ws.call("kernel.status", args)
        assert status["result"]["queued"] == ["c", "a", "b"]
        # Each run started leaves the queue's head; the rest keep their order.
        await wait_for(lambda: kernel_state(theirs)["queue"] == ["a", "b"], what="c started")
        assert states(theirs)["a"] == "queued"
        await wait_for(lambda: states(theirs)["b"] == IDLE, what="b ran")
        assert kernel_state(theirs)["queue"] == []
        # An error drops what was queued behind it, and the queue says so at once.
        await ws.call("kernel.execute", {**args, "cell_ids": ["gate", "boom", "never", "a"]})
        assert kernel_state(theirs)["queue"] == ["boom", "never", "a"]
        await wait_for(lambda: states(theirs)["never"] == NOT_RUN, what="never dropped")
        assert kernel_state(theirs)["queue"] == []
        assert text_of(cells(theirs)["a"]) == "a\n"  # its earlier run's output stays


async def test_no_output_is_lost_when_the_server_reads_slower_than_the_kernel_prints(
    server, user, rooms, project
):
    # A kernel printing at full speed while the server's loop is busy (here: blocked for
    # 2 s right after the run starts) outruns the server's reading; ZeroMQ's default
    # high-water marks (1,000 messages a side) would have the kernel's IOPub socket drop
    # what does not fit, and the cell would show a hole in its output.
    src = "for i in range(20000):\n    print(i, flush=True)"
    doc = await put_notebook(rooms, project, "flood.ipynb", notebook([("c1", src)]))
    async with ws_connect(server, user.key) as ws:
        await ws.call(
            "kernel.execute",
            {"project_id": str(project), "path": "flood.ipynb", "cell_ids": ["c1"]},
        )
        await wait_for(lambda: text_of(cells(doc)["c1"]), what="the first output", timeout=60)
        time.sleep(2)  # noqa: ASYNC251 (the loop stalls: nothing reads the kernel)
        await wait_for(lambda: states(doc)["c1"] == IDLE, what="the run's end", timeout=120)
    expected = "".join(f"{i}\n" for i in range(20000))
    text = text_of(cells(doc)["c1"])
    got = set(text.split())
    missing = [i for i in range(20000) if str(i) not in got]
    assert text == expected, f"{len(missing)} lines lost, from line {missing[:1]}"
