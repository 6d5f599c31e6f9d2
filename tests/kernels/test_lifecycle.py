"""Interrupt, restart, death, input prompts and a flood, through /ws on a real server."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from collab.kernels.outputs import NOT_RUN
from tests.conftest import ws_connect
from tests.kernels.conftest import (
    cells,
    kernel_state,
    notebook,
    put_notebook,
    states,
    text_of,
    wait_for,
)


def _args(project: Any, path: str, **extra: Any) -> dict[str, Any]:
    return {"project_id": str(project), "path": path, **extra}


async def test_interrupt_stops_an_endless_loop_and_the_queue_is_not_run(
    server, user, rooms, project
):
    nb = notebook([("loop", "while True: pass"), ("after", "print('after')")])
    doc = await put_notebook(rooms, project, "i.ipynb", nb)
    async with ws_connect(server, user.key) as ws:
        await ws.call("kernel.execute", _args(project, "i.ipynb", cell_ids=["loop", "after"]))
        await wait_for(lambda: states(doc)["loop"] == "running", what="loop running")
        await asyncio.sleep(0.5)
        answer = await ws.call("kernel.interrupt", _args(project, "i.ipynb"))
        assert "result" in answer, answer
        await wait_for(lambda: states(doc)["after"] == NOT_RUN, what="queue dropped")
        loop = cells(doc)["loop"]
        await wait_for(lambda: cells(doc)["loop"]["outputs"], what="interrupt error")
        loop = cells(doc)["loop"]
        assert loop["outputs"][0]["ename"] == "KeyboardInterrupt"
        # The kernel survives an interrupt and runs the next request.
        await ws.call("kernel.execute", _args(project, "i.ipynb", cell_ids=["after"]))
        await wait_for(lambda: text_of(cells(doc)["after"]) == "after\n", what="after runs")


async def test_restart_clears_the_namespace(server, user, rooms, project):
    nb = notebook([("set", "x = 41"), ("get", "print(x + 1)")])
    doc = await put_notebook(rooms, project, "r.ipynb", nb)
    async with ws_connect(server, user.key) as ws:
        await ws.call("kernel.execute", _args(project, "r.ipynb", cell_ids=["set", "get"]))
        await wait_for(lambda: text_of(cells(doc)["get"]) == "42\n", what="x defined")
        answer = await ws.call("kernel.restart", _args(project, "r.ipynb"))
        assert answer["result"]["status"] == "idle", answer
        await ws.call("kernel.execute", _args(project, "r.ipynb", cell_ids=["get"]))
        await wait_for(
            lambda: any("ename" in o for o in cells(doc)["get"]["outputs"]), what="NameError"
        )
        assert cells(doc)["get"]["outputs"][0]["ename"] == "NameError"
        assert cells(doc)["get"]["execution_count"] == 1


def _host_pid(inner: int, launched: int) -> int:
    """The kernel's pid as the server sees it: in its sandbox it has a pid namespace of its
    own, so the pid it prints is that namespace's (the launched process is bwrap)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as fh:
                status = dict(line.split(":", 1) for line in fh.read().splitlines() if ":" in line)
        except OSError:
            continue
        ids = status.get("NSpid", "").split()
        if len(ids) > 1 and int(ids[-1]) == inner and _descends(int(entry), launched):
            return int(entry)
    return inner  # no sandbox: the same pid


def _descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            with open(f"/proc/{pid}/stat") as fh:
                pid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            return False
    return False


async def test_a_killed_kernel_is_reported_dead_and_the_next_execution_starts_a_new_one(
    server, user, rooms, project
):
    nb = notebook(
        [
            ("pid", "import os; print(os.getpid())"),
            ("sleep", "import time; time.sleep(60)"),
            ("queued", "print('never')"),
            ("again", "print('alive')"),
        ]
    )
    doc = await put_notebook(rooms, project, "k.ipynb", nb)
    async with ws_connect(server, user.key) as ws:
        await ws.call("kernel.execute", _args(project, "k.ipynb", cell_ids=["pid"]))
        pid = int(await wait_for(lambda: text_of(cells(doc)["pid"]).strip(), what="pid"))
        await ws.call("kernel.execute", _args(project, "k.ipynb", cell_ids=["sleep", "queued"]))
        await wait_for(lambda: states(doc)["sleep"] == "running", what="sleeping")
        launched = server.services.extra["kernels"].get(project, "k.ipynb")._backend._km
        os.kill(_host_pid(pid, launched.provisioner.pid), signal.SIGKILL)
        await wait_for(lambda: kernel_state(doc).get("status") == "dead", what="reported dead")
        await wait_for(lambda: states(doc)["queued"] == NOT_RUN, what="queue dropped")
        await wait_for(lambda: cells(doc)["sleep"]["outputs"], what="death notice")
        assert cells(doc)["sleep"]["outputs"][-1]["ename"] == "KernelDied"
        status = await ws.call("kernel.status", _args(project, "k.ipynb"))
        assert status["result"]["status"] == "dead"
        await ws.call("kernel.execute", _args(project, "k.ipynb", cell_ids=["again"]))
        await wait_for(lambda: text_of(cells(doc)["again"]) == "alive\n", what="new kernel")
        assert cells(doc)["again"]["execution_count"] == 1


async def test_input_prompts_appear_in_the_document_and_passwords_are_never_stored(
    server, user, rooms, project
):
    src = "import getpass\nname = input('name? ')\npw = getpass.getpass('secret? ')\nprint(name, len(pw))"
    doc = await put_notebook(rooms, project, "in.ipynb", notebook([("ask", src)]))
    async with ws_connect(server, user.key) as ws:
        early = await ws.call("kernel.input", _args(project, "in.ipynb", value="x"))
        assert early["error"]["code"] == "no_kernel"
        await ws.call("kernel.execute", _args(project, "in.ipynb", cell_ids=["ask"]))
        prompt = await wait_for(lambda: kernel_state(doc).get("input"), what="prompt")
        assert prompt == {"cell_id": "ask", "prompt": "name? ", "password": False}
        assert (await ws.call("kernel.input", _args(project, "in.ipynb", value="ada")))["result"]
        prompt = await wait_for(
            lambda: (kernel_state(doc).get("input") or {}).get("password"), what="password prompt"
        )
        answer = await ws.call("kernel.input", _args(project, "in.ipynb", value="hunter2"))
        assert answer["result"] == {"ok": True}
        await wait_for(lambda: "ada 7" in text_of(cells(doc)["ask"]), what="printed")
        again = await ws.call("kernel.input", _args(project, "in.ipynb", value="late"))
        assert again["error"]["code"] == "no_input_pending"
    assert "input" not in kernel_state(doc)
    assert text_of(cells(doc)["ask"]) == "name? ada\nsecret? \nada 7\n"
    assert b"hunter2" not in doc.get_update()


async def test_a_million_line_print_is_capped_and_healthz_keeps_answering(
    server, user, rooms, project
):
    src = "for i in range(1_000_000): print(i)"
    doc = await put_notebook(rooms, project, "m.ipynb", notebook([("flood", src)]))
    async with ws_connect(server, user.key) as ws, server.client() as http:
        await ws.call("kernel.execute", _args(project, "m.ipynb", cell_ids=["flood"]))
        await wait_for(lambda: states(doc)["flood"] == "running", what="running")
        worst = 0.0
        while states(doc)["flood"] == "running":
            started = time.perf_counter()
            r = await http.get("/healthz")
            worst = max(worst, time.perf_counter() - started)
            assert r.status_code == 200
            await asyncio.sleep(0.05)
        outputs = cells(doc)["flood"]["outputs"]
        assert len(outputs[0]["text"]) == server.services.settings.kernel_max_output_bytes
        assert "output truncated" in outputs[-1]["data"]["text/plain"]
        # Reported, not asserted (machine-dependent); the healthz checks above must all pass.
        print(f"worst /healthz latency during the flood: {worst * 1000:.1f} ms")
