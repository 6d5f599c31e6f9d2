"""Bad input to the kernel calls gets a clear error code; culling; limits; kernelspecs."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from jupyter_ydoc import YNotebook
from pycrdt import Doc

from collab.kernels.backend import LocalBackend
from collab.kernels.session import KernelSession
from tests.conftest import ws_connect
from tests.kernels.conftest import cells, notebook, put_notebook, states, text_of, wait_for

GOOD = {"path": "a.ipynb", "cell_ids": ["c1"]}


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ({"project_id": None, **GOOD}, "bad_args"),  # no project_id
        ({"project_id": 7, **GOOD}, "bad_args"),
        ({"project_id": "not-a-uuid", **GOOD}, "bad_args"),
        ({"cell_ids": ["c1"]}, "bad_args"),  # no path
        ({"path": 3, "cell_ids": ["c1"]}, "bad_args"),
        ({"path": "", "cell_ids": ["c1"]}, "bad_args"),
        ({"path": "../other/a.ipynb", "cell_ids": ["c1"]}, "bad_path"),
        ({"path": "x/../../a.ipynb", "cell_ids": ["c1"]}, "bad_path"),
        ({"path": "/etc/a.ipynb", "cell_ids": ["c1"]}, "bad_path"),
        ({"path": "a\x00.ipynb", "cell_ids": ["c1"]}, "bad_path"),
        ({"path": "a\\..\\b.ipynb", "cell_ids": ["c1"]}, "bad_path"),
        ({"path": "dir//a.ipynb", "cell_ids": ["c1"]}, "bad_path"),
        ({"path": "a.txt", "cell_ids": ["c1"]}, "bad_path"),
        ({"path": "x" * 2000 + ".ipynb", "cell_ids": ["c1"]}, "bad_path"),
        ({"path": "out/a.ipynb", "cell_ids": ["c1"]}, "bad_path"),  # symlink leading out
        ({"path": "a.ipynb"}, "bad_args"),
        ({"path": "a.ipynb", "cell_ids": []}, "bad_args"),
        ({"path": "a.ipynb", "cell_ids": "c1"}, "bad_args"),
        ({"path": "a.ipynb", "cell_ids": [1]}, "bad_args"),
        ({"path": "a.ipynb", "cell_ids": ["x" * 300]}, "bad_args"),
        ({"path": "a.ipynb", "cell_ids": ["c"] * 1001}, "too_large"),
        ({"path": "a.ipynb", "cell_ids": ["missing"]}, "no_such_cell"),
        ({"path": "a.ipynb", "cell_ids": ["c1"], "extra": 1}, "bad_args"),
    ],
)
async def test_malformed_execute_calls_get_a_clear_error(server, user, rooms, project, args, code):
    (server.services.settings.projects_dir / str(project) / "out").symlink_to("/tmp")
    await put_notebook(rooms, project, "a.ipynb", notebook([("c1", "1")]))
    args = {"project_id": str(project), **args}
    if args["project_id"] is None:
        del args["project_id"]
    async with ws_connect(server, user.key) as ws:
        answer = await ws.request({"call": "kernel.execute", "args": args})
    assert answer["error"]["code"] == code, answer
    assert answer["error"]["message"]


async def test_a_missing_project_looks_like_someone_elses(server, user, rooms):
    async with ws_connect(server, user.key) as ws:
        answer = await ws.call("kernel.execute", {"project_id": str(uuid.uuid4()), **GOOD})
    assert answer["error"]["code"] == "forbidden"


async def test_calls_on_a_notebook_without_a_kernel(server, user, rooms, project):
    args: dict[str, Any] = {"project_id": str(project), "path": "none.ipynb"}
    async with ws_connect(server, user.key) as ws:
        for name in ("kernel.interrupt", "kernel.shutdown"):
            assert (await ws.call(name, args))["error"]["code"] == "no_kernel"
        assert (await ws.call("kernel.input", {**args, "value": 5}))["error"]["code"] == "bad_args"
        big = {**args, "value": "x" * 70_000}
        assert (await ws.call("kernel.input", big))["error"]["code"] == "too_large"
        assert (await ws.call("kernel.status", args))["result"]["status"] == "stopped"
        assert (await ws.call("kernel.status", {**args, "x": 1}))["error"]["code"] == "bad_args"


async def test_idle_kernels_are_culled_and_busy_ones_are_not(server, user, rooms, project):
    kernels = server.services.extra["kernels"]
    await put_notebook(rooms, project, "idle.ipynb", notebook([("c", "1")]))
    busy_doc = await put_notebook(
        rooms, project, "busy.ipynb", notebook([("c", "import time; time.sleep(30)")])
    )
    async with ws_connect(server, user.key) as ws:
        for path in ("idle.ipynb", "busy.ipynb"):
            await ws.call(
                "kernel.execute", {"project_id": str(project), "path": path, "cell_ids": ["c"]}
            )
    idle = kernels.get(project, "idle.ipynb")
    await wait_for(lambda: not idle.busy, what="idle kernel done")
    await wait_for(lambda: states(busy_doc)["c"] == "running", what="busy running")
    object.__setattr__(kernels.settings, "kernel_idle_seconds", 0)
    culled = await kernels.cull()
    assert culled == [(project, "idle.ipynb")]
    assert kernels.get(project, "idle.ipynb") is None
    assert kernels.get(project, "busy.ipynb") is not None
    assert rooms.rooms[(project, "idle.ipynb")].holders == 0
    assert rooms.rooms[(project, "busy.ipynb")].holders == 1
    await kernels.shutdown(project, "busy.ipynb")


async def test_kernels_per_project_are_limited(server, user, rooms, project):
    object.__setattr__(server.services.settings, "kernels_per_project", 1)
    for path in ("one.ipynb", "two.ipynb"):
        await put_notebook(rooms, project, path, notebook([("c", "1")]))
    async with ws_connect(server, user.key) as ws:
        first = await ws.call(
            "kernel.execute", {"project_id": str(project), "path": "one.ipynb", "cell_ids": ["c"]}
        )
        assert "result" in first
        second = await ws.call(
            "kernel.execute", {"project_id": str(project), "path": "two.ipynb", "cell_ids": ["c"]}
        )
        assert second["error"]["code"] == "too_many_kernels"


async def test_the_kernel_runs_in_the_project_directory_under_a_memory_limit(tmp_path: Path):
    doc = Doc()
    src = "import os\nprint(os.getcwd())\nb = bytearray(1500 * 1024 * 1024)"
    YNotebook(doc).set(notebook([("c", src)]))
    session = KernelSession(doc, lambda name: LocalBackend(name, tmp_path, 1024 * 1024 * 1024))
    session.start()
    try:
        session.execute(["c"])
        await wait_for(lambda: not session.busy, what="done")
        session.writer.flush()
        cell = cells(doc)["c"]
        assert text_of(cell) == f"{await asyncio.to_thread(tmp_path.resolve)}\n"
        assert cell["outputs"][-1]["ename"] == "MemoryError"
    finally:
        await session.shutdown()


async def test_the_kernelspec_comes_from_the_notebook_metadata(tmp_path: Path):
    doc = Doc()
    YNotebook(doc).set(notebook([("c", "1")], kernel="no-such-kernel"))
    session = KernelSession(doc, lambda name: LocalBackend(name, tmp_path, 0))
    session.start()
    try:
        session.execute(["c"])
        await wait_for(lambda: not session.busy, what="done")
        session.writer.flush()
        assert session.kernel_name == "no-such-kernel"
        assert session.status == "dead"
        assert cells(doc)["c"]["outputs"][0]["ename"] == "KernelStartFailed"
    finally:
        await session.shutdown()


async def test_a_queued_cell_runs_the_source_it_has_when_it_starts(tmp_path: Path):
    doc = Doc()
    nb = YNotebook(doc)
    nb.set(notebook([("slow", "import time; time.sleep(1)"), ("later", "print('old')")]))
    session = KernelSession(doc, lambda name: LocalBackend(name, tmp_path, 0))
    session.start()
    try:
        session.execute(["slow", "later"])
        await wait_for(lambda: states(doc)["slow"] == "running", what="slow running")
        nb.set_cell(1, source="print('edited while queued')")
        await wait_for(lambda: not session.busy, what="done")
        session.writer.flush()
        assert text_of(cells(doc)["later"]) == "edited while queued\n"
    finally:
        await session.shutdown()


async def test_kernels_do_not_see_the_servers_settings_or_database_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("COLLAB_DATABASE_URL", "postgresql://secret@db/collab")
    monkeypatch.setenv("PGPASSWORD", "hunter2")
    doc = Doc()
    src = "import os; print(os.environ.get('COLLAB_DATABASE_URL'), os.environ.get('PGPASSWORD'))"
    YNotebook(doc).set(notebook([("c", src)]))
    session = KernelSession(doc, lambda name: LocalBackend(name, tmp_path, 0))
    session.start()
    try:
        session.execute(["c"])
        await wait_for(lambda: not session.busy, what="done")
        session.writer.flush()
        assert text_of(cells(doc)["c"]) == "None None\n"
    finally:
        await session.shutdown()


async def test_without_document_rooms_execution_is_unavailable(server, user, project):
    server.services.extra.pop("rooms", None)
    async with ws_connect(server, user.key) as ws:
        answer = await ws.call(
            "kernel.execute", {"project_id": str(project), "path": "a.ipynb", "cell_ids": ["c"]}
        )
    assert answer["error"]["code"] == "unavailable"


async def test_a_new_session_clears_state_left_by_a_process_that_is_gone(tmp_path: Path):
    doc = Doc()
    YNotebook(doc).set(notebook([("a", "1"), ("b", "2"), ("c", "3")]))
    from pycrdt import Array, Map

    ycells = doc.get("cells", type=Array)
    ycells[0]["execution_state"] = "running"
    ycells[1]["execution_state"] = "queued"
    doc.get("kernel", type=Map).update(
        {"status": "busy", "input": {"prompt": "x"}, "queue": Array(["b"])}
    )
    session = KernelSession(doc, lambda name: LocalBackend(name, tmp_path, 0))
    session.start()
    try:
        assert states(doc) == {"a": "not_run", "b": "not_run", "c": "idle"}
        assert doc.get("kernel", type=Map).to_py() == {"status": "stopped", "queue": []}
    finally:
        await session.shutdown()


async def test_interrupt_follows_a_kernelspec_with_message_interrupt_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import json
    import sys

    spec = tmp_path / "share" / "kernels" / "py-message"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python (message interrupts)",
                "language": "python",
                "interrupt_mode": "message",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share"))
    doc = Doc()
    nb = notebook([("loop", "while True: pass"), ("next", "print('next')")], kernel="py-message")
    YNotebook(doc).set(nb)
    session = KernelSession(doc, lambda name: LocalBackend(name, tmp_path, 0))
    session.start()
    try:
        session.execute(["loop", "next"])
        await wait_for(lambda: states(doc)["loop"] == "running", what="loop running")
        assert session.kernel_name == "py-message"
        await session.interrupt()
        await wait_for(lambda: not session.busy, what="interrupted")
        session.writer.flush()
        assert cells(doc)["loop"]["outputs"][0]["ename"] == "KeyboardInterrupt"
        assert states(doc)["next"] == "not_run"
    finally:
        await session.shutdown()
