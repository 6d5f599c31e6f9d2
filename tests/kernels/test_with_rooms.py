"""Execution through the real document rooms: a y-websocket client adds a cell, another
client sees its outputs, and the outputs reach the notebook file on disk."""

from __future__ import annotations

import asyncio
import json

from jupyter_ydoc import YNotebook

from tests.conftest import ws_connect
from tests.kernels.conftest import notebook, wait_for
from tests.sync.yclient import connect


async def test_outputs_reach_every_y_websocket_client_and_the_file(server, user, project):
    async with (
        connect(server, project, "live.ipynb", user.key) as a,
        connect(server, project, "live.ipynb", user.key) as b,
    ):
        await asyncio.wait_for(a.synced.wait(), 10)
        await asyncio.wait_for(b.synced.wait(), 10)
        YNotebook(a.doc).set(notebook([("c1", "print('over the wire')\n6*7")]))
        await a.wait_acked()
        async with ws_connect(server, user.key) as ws:
            answer = await ws.call(
                "kernel.execute",
                {"project_id": str(project), "path": "live.ipynb", "cell_ids": ["c1"]},
            )
            assert answer["result"]["queued"] == ["c1"], answer

        def outputs(doc):
            cells = YNotebook(doc).get()["cells"]
            return cells[0]["outputs"] if cells else []

        await wait_for(lambda: len(outputs(b.doc)) == 2, what="outputs at b")
        assert outputs(b.doc)[0]["text"] == "over the wire\n"
        assert outputs(a.doc)[1]["data"]["text/plain"] == "42"
    path = server.services.settings.projects_dir / str(project) / "live.ipynb"

    def on_disk():
        try:
            nb = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        return nb["cells"] and len(nb["cells"][0]["outputs"]) == 2

    await wait_for(on_disk, what="outputs in the file")
    await server.services.extra["kernels"].shutdown(project, "live.ipynb")


async def test_a_file_that_is_not_a_notebook_is_a_bad_document(server, user, project):
    path = server.services.settings.projects_dir / str(project) / "broken.ipynb"
    path.write_text("this is not json")
    async with ws_connect(server, user.key) as ws:
        answer = await ws.call(
            "kernel.execute",
            {"project_id": str(project), "path": "broken.ipynb", "cell_ids": ["c1"]},
        )
    assert answer["error"]["code"] == "bad_document", answer
