"""`collab serve` as a user runs it: a real process with its embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
import websockets


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _start(data_dir: Path, port: int) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLAB_")}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "collab.cli",
        "serve",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def _wait_healthy(port: int, proc: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            if proc.returncode is not None:
                raise AssertionError(
                    "server exited: " + (await proc.stderr.read()).decode()[-2000:]
                )
            try:
                r = await client.get(f"http://127.0.0.1:{port}/healthz")
                if r.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("server never became healthy")


async def test_serve_with_embedded_postgres_signs_up_and_shuts_down_gracefully(tmp_path) -> None:
    port = _free_port()
    proc = await _start(tmp_path / "data", port)
    try:
        await _wait_healthy(port, proc)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as client:
            r = await client.post(
                "/api/auth/signup", json={"email": "new@example.com", "password": "a long password"}
            )
            assert r.status_code == 201
            key = (await client.post("/api/auth/keys", json={"name": "cli"})).json()["key"]
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/ws", additional_headers={"Authorization": f"Bearer {key}"}
        ) as ws:
            await ws.send('{"id": 1, "call": "ping"}')
            assert await ws.recv() == '{"id": 1, "result": "pong"}'
            # The client offered permessage-deflate; `collab serve` declines it by default.
            assert ws.response is not None
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(ws.wait_closed(), 20)
            assert ws.close_code == 1012
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        stderr = (await proc.stderr.read()).decode()
        assert '"event": "http.request"' in stderr and '"event": "ws.connect"' in stderr
        assert (tmp_path / "data" / "postgres" / "PG_VERSION").exists()
        assert (tmp_path / "data" / "secret").exists()

        # A warm restart keeps the accounts made before.
        proc = await _start(tmp_path / "data", port)
        await _wait_healthy(port, proc)
        async with httpx.AsyncClient(base_url=base) as client:
            r = await client.post(
                "/api/auth/login", json={"email": "new@example.com", "password": "a long password"}
            )
            assert r.status_code == 200
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
