"""The kernel picker: kernel.specs lists the kernelspecs the server offers (members only);
kernel.restart with `kernel_name` writes the notebook's kernelspec metadata for everyone
and restarts the kernel as that kernelspec."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_ydoc import YNotebook

from tests.conftest import make_user, ws_connect
from tests.kernels.conftest import cells, notebook, put_notebook, text_of, wait_for


@pytest.fixture
def alt_kernel(tmp_path: Any, monkeypatch: Any) -> str:
    """A second kernelspec ("Python (alt)") beside python3, as an admin would install."""
    python3 = KernelSpecManager().get_kernel_spec("python3")
    folder = tmp_path / "jupyter" / "kernels" / "alt"
    folder.mkdir(parents=True)
    spec = {"argv": python3.argv, "display_name": "Python (alt)", "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "alt"


async def test_members_list_kernelspecs_and_strangers_do_not(server, user, project, alt_kernel):
    stranger = await make_user(server)
    async with ws_connect(server, user.key) as ws, ws_connect(server, stranger.key) as other:
        answer = await ws.call("kernel.specs", {"project_id": str(project)})
        result = answer["result"]
        assert result["default"] == "python3", result
        names = {s["name"]: s for s in result["kernelspecs"]}
        assert {"python3", "alt"} <= set(names), result
        assert names["alt"] == {"name": "alt", "display_name": "Python (alt)", "language": "python"}
        refused = await other.call("kernel.specs", {"project_id": str(project)})
        assert refused["error"]["code"] == "forbidden", refused


async def test_picking_a_kernel_sets_the_metadata_and_restarts_as_it(
    server, user, rooms, project, alt_kernel
):
    viewer = await make_user(server)
    await server.services.pool.execute(
        "INSERT INTO project_users (project_id, account_id, role) VALUES ($1, $2, 'viewer')",
        project,
        UUID(viewer.account_id),
    )
    doc = await put_notebook(
        rooms, project, "t.ipynb", notebook([("c", "x = 41"), ("d", "print(x + 1)")], "python3")
    )
    args = {"project_id": str(project), "path": "t.ipynb"}
    kernels = server.services.extra["kernels"]
    async with ws_connect(server, user.key) as ws, ws_connect(server, viewer.key) as vws:
        await ws.call("kernel.execute", {**args, "cell_ids": ["c"]})
        await wait_for(lambda: cells(doc)["c"].get("execution_count") == 1, what="c ran")
        first = kernels.get(project, "t.ipynb").session_id
        unknown = await ws.call("kernel.restart", {**args, "kernel_name": "nope"})
        assert unknown["error"]["code"] == "no_such_kernel", unknown
        refused = await vws.call("kernel.restart", {**args, "kernel_name": alt_kernel})
        assert refused["error"]["code"] == "forbidden", refused
        assert YNotebook(doc).get()["metadata"]["kernelspec"]["name"] == "python3"

        answer = await ws.call("kernel.restart", {**args, "kernel_name": alt_kernel})
        assert answer["result"] == {"status": "idle", "name": "alt"}, answer
        spec = YNotebook(doc).get()["metadata"]["kernelspec"]
        assert spec == {"name": "alt", "display_name": "Python (alt)", "language": "python"}
        session = kernels.get(project, "t.ipynb")
        assert session.kernel_name == "alt" and session.session_id != first
        # A fresh namespace: x is gone.
        await ws.call("kernel.execute", {**args, "cell_ids": ["d"]})
        await wait_for(
            lambda: "NameError" in json.dumps(cells(doc)["d"]["outputs"]), what="d failed"
        )
        assert cells(doc)["d"]["execution_count"] == 1
        await ws.call("kernel.execute", {**args, "cell_ids": ["c", "d"]})
        await wait_for(lambda: text_of(cells(doc)["d"]) == "42\n", what="d printed")
        await kernels.executions.drained()
    rows = await server.services.pool.fetch(
        "SELECT cell_id, kernel_name FROM executions ORDER BY seq"
    )
    assert [(r["cell_id"], r["kernel_name"]) for r in rows] == [
        ("c", "python3"),
        ("d", "alt"),
        ("c", "alt"),
        ("d", "alt"),
    ]
    row = await server.services.pool.fetchrow("SELECT kernel_name FROM kernels")
    assert row["kernel_name"] == "alt"
