"""Remote kernels: a real `jupyter kernelgateway` process runs the cell."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jupyter_ydoc import YNotebook

from tests.conftest import make_user, serve, ws_connect
from tests.kernels.conftest import (
    MemoryRooms,
    cells,
    notebook,
    put_notebook,
    states,
    text_of,
    wait_for,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[str, str]]:
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable, "-m", "kernel_gateway",
        "--KernelGatewayApp.ip=127.0.0.1",
        f"--KernelGatewayApp.port={port}",
        f"--KernelGatewayApp.auth_token={token}",
    ]  # fmt: skip
    env = {**os.environ, "KG_LIST_KERNELS": "True"}
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                r = httpx.get(url + "/api", headers={"Authorization": f"token {token}"})
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError("kernel gateway exited")
            import time

            time.sleep(0.1)
        yield url, token
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
async def gateway_server(settings: Any, gateway: tuple[str, str]) -> AsyncIterator[Any]:
    url, token = gateway
    async with serve(settings.replace(kernel_gateway_url=url, kernel_gateway_token=token)) as s:
        yield s


async def test_a_cell_runs_end_to_end_on_a_kernel_gateway(gateway_server, gateway):
    server = gateway_server
    rooms = MemoryRooms()
    server.services.extra["rooms"] = rooms
    user = await make_user(server)
    from uuid import UUID

    from collab.projects import store

    project = await store.create_project(
        server.services.pool, server.services.settings.projects_dir, UUID(user.account_id)
    )
    src = "import os\nprint('remote', os.getpid())\nname = input('who? ')\nprint('hi', name)\n6*7"
    doc = await put_notebook(rooms, project, "g.ipynb", notebook([("c1", src), ("c2", "x = 1")]))
    args = {"project_id": str(project), "path": "g.ipynb"}
    async with ws_connect(server, user.key) as ws:
        answer = await ws.call("kernel.execute", {**args, "cell_ids": ["c1"]})
        assert answer["result"]["queued"] == ["c1"], answer
        await wait_for(
            lambda: (doc.get("kernel", type=__import__("pycrdt").Map).to_py() or {}).get("input")
        )
        assert (await ws.call("kernel.input", {**args, "value": "gw"}))["result"] == {"ok": True}
        await wait_for(lambda: len(cells(doc)["c1"]["outputs"]) == 2, what="outputs")
        cell = cells(doc)["c1"]
        out = text_of(cell)
        assert out.startswith("remote ") and out.endswith("who? gw\nhi gw\n"), out
        assert int(out.split()[1]) != os.getpid()
        assert cell["outputs"][1]["data"]["text/plain"] == "42"
        # The kernel lives on the gateway, not under this process.
        async with httpx.AsyncClient() as http:
            listed = await http.get(
                gateway[0] + "/api/kernels", headers={"Authorization": f"token {gateway[1]}"}
            )
        assert len(listed.json()) == 1
        YNotebook(doc).set_cell(1, source="while True: pass")
        await ws.call("kernel.execute", {**args, "cell_ids": ["c2"]})
        await wait_for(lambda: states(doc)["c2"] == "running", what="loop on the gateway")
        await asyncio.sleep(0.3)
        assert "result" in await ws.call("kernel.interrupt", args)
        await wait_for(lambda: cells(doc)["c2"]["outputs"], what="interrupted")
        assert cells(doc)["c2"]["outputs"][0]["ename"] == "KeyboardInterrupt"
        restarted = await ws.call("kernel.restart", args)
        assert restarted["result"]["status"] == "idle", restarted
        assert (await ws.call("kernel.shutdown", args))["result"] == {"status": "stopped"}
        await asyncio.sleep(0.2)
        async with httpx.AsyncClient() as http:
            listed = await http.get(
                gateway[0] + "/api/kernels", headers={"Authorization": f"token {gateway[1]}"}
            )
        assert listed.json() == []
