"""Kernel calls of one connection on one notebook run in the order sent."""

from __future__ import annotations

import asyncio
import itertools
import json

from tests.conftest import ws_connect
from tests.kernels.conftest import notebook, put_notebook


async def test_kernel_calls_sent_back_to_back_run_in_the_order_sent(
    server, user, rooms, project
) -> None:
    await put_notebook(rooms, project, "o.ipynb", notebook([("c", "1")]))
    args = {"project_id": str(project), "path": "o.ipynb"}
    async with ws_connect(server, user.key) as ws:
        ids = itertools.count(100)
        sent: dict[int, str] = {}
        # execute (which starts the kernel), status, shutdown, status: without waiting.
        for name, extra in [
            ("kernel.execute", {"cell_ids": ["c"]}),
            ("kernel.status", {}),
            ("kernel.shutdown", {}),
            ("kernel.status", {}),
        ]:
            msg_id = next(ids)
            sent[msg_id] = name
            await ws.conn.send(json.dumps({"id": msg_id, "call": name, "args": {**args, **extra}}))
        answers = {}
        while len(answers) < len(sent):
            frame = json.loads(await asyncio.wait_for(ws.conn.recv(), 120))
            if frame.get("id") in sent:
                answers[frame["id"]] = frame
    execute, status, shutdown, after = (answers[i] for i in sorted(answers))
    assert execute["result"]["queued"] == ["c"], execute
    # The status sent right behind execute sees the kernel execute started...
    assert status["result"]["status"] != "stopped" and status["result"]["name"] == "python3"
    # ...and the shutdown behind it finds that kernel to shut down.
    assert shutdown["result"] == {"status": "stopped"}, shutdown
    assert after["result"]["status"] == "stopped"
