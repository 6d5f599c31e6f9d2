"""Real server processes for tests that kill one (-9) or run two side by side."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    data_dir: Path
    database_url: str
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    # More COLLAB_* settings for this process.
    env: dict[str, str] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> None:
        env = {
            **os.environ,
            "COLLAB_SECRET": "test-secret",
            "COLLAB_SYNC_UNLOAD_DELAY_MS": "500",
            **(self.env or {}),
        }
        code = "import sys; from collab.cli import main; sys.exit(main(sys.argv[1:]))"
        with open(self.log, "ab") as log:  # noqa: ASYNC230 - a test helper, once per start
            self.proc = subprocess.Popen(  # noqa: ASYNC220
                [
                    sys.executable,
                    "-c",
                    code,
                    "serve",
                    "--data-dir",
                    str(self.data_dir),
                    "--database-url",
                    self.database_url,
                    "--port",
                    str(self.port),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    r = await client.get(self.http + "/healthz", timeout=1)
                    if r.status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError("server did not start")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


async def signup(base: str, email: str) -> tuple[str, str]:
    """A new account: (API key, account id)."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        r = await client.post(
            "/api/auth/signup",
            json={"email": email, "password": "correct horse battery", "name": "Typist"},
        )
        assert r.status_code == 201, r.text
        r2 = await client.post("/api/auth/keys", json={"name": "tests"})
        assert r2.status_code == 201, r2.text
        return str(r2.json()["key"]), str(r.json()["account_id"])
