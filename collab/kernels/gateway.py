"""GatewayBackend: a kernel on a Jupyter Kernel Gateway or Enterprise Gateway, through its
REST API (/api/kernels) and its channels WebSocket, with messages built and signed-free
as the gateway's websocket protocol expects (JSON with a `channel` field)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any
from urllib.parse import quote

import httpx
import websockets
from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session

from collab.kernels.backend import OnMessage

log = logging.getLogger(__name__)


class GatewayBackend:
    def __init__(
        self,
        url: str,
        kernel_name: str,
        token: str | None = None,
        startup_timeout: float = 60,
    ) -> None:
        self.url = url.rstrip("/")
        self.kernel_name = kernel_name
        self.startup_timeout = startup_timeout
        self._headers = {"Authorization": f"token {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=self._headers, timeout=startup_timeout
        )
        self._session = Session(key=b"")
        self.kernel_id: str | None = None
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._outbox: asyncio.Queue[str] = asyncio.Queue()

    async def start(self, on_message: OnMessage) -> None:
        r = await self._http.post("/api/kernels", json={"name": self.kernel_name})
        r.raise_for_status()
        self.kernel_id = str(r.json()["id"])
        ws_url = self.url.replace("http", "ws", 1)
        ws_url += f"/api/kernels/{quote(self.kernel_id)}/channels"
        try:
            self._ws = await websockets.connect(
                ws_url, additional_headers=self._headers, max_size=None
            )
            self._reader = asyncio.create_task(self._read(on_message), name="gateway-reader")
            self._writer = asyncio.create_task(self._write(), name="gateway-writer")
            await self._wait_ready()
        except BaseException:
            await self.shutdown()
            raise

    async def _wait_ready(self) -> None:
        # kernel_info answered on shell means every channel is connected end to end.
        loop = asyncio.get_running_loop()
        self._ready: asyncio.Future[None] = loop.create_future()
        self._ready_id = self._send("shell", "kernel_info_request", {})
        await asyncio.wait_for(self._ready, self.startup_timeout)

    async def _read(self, on_message: OnMessage) -> None:
        try:
            async for raw in self._ws:
                msg = json.loads(raw)
                channel = msg.pop("channel", "")
                parent = (msg.get("parent_header") or {}).get("msg_id")
                ready = getattr(self, "_ready", None)
                if ready is not None and not ready.done() and parent == self._ready_id:
                    ready.set_result(None)
                    continue
                try:
                    on_message(channel, msg)
                except Exception:
                    log.exception("handling a gateway message failed")
        except websockets.ConnectionClosed:
            pass

    async def _write(self) -> None:
        while True:
            frame = await self._outbox.get()
            try:
                await self._ws.send(frame)
            except websockets.ConnectionClosed:
                return

    def _send(self, channel: str, msg_type: str, content: dict[str, Any]) -> str:
        msg = self._session.msg(msg_type, content)
        msg["channel"] = channel
        msg["buffers"] = []
        frame = json.dumps(msg, default=json_default)
        # One writer task sends in order; execute() stays synchronous like the local client.
        self._outbox.put_nowait(frame)
        msg_id: str = msg["header"]["msg_id"]
        return msg_id

    def execute(self, code: str) -> str:
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": True,
            "stop_on_error": True,
        }
        return self._send("shell", "execute_request", content)

    def input_reply(self, value: str) -> None:
        self._send("stdin", "input_reply", {"value": value})

    async def interrupt(self) -> None:
        if self.kernel_id:
            r = await self._http.post(f"/api/kernels/{quote(self.kernel_id)}/interrupt")
            r.raise_for_status()

    async def restart(self) -> None:
        if not self.kernel_id:
            raise RuntimeError("kernel not started")
        r = await self._http.post(f"/api/kernels/{quote(self.kernel_id)}/restart")
        r.raise_for_status()
        await self._wait_ready()

    async def shutdown(self) -> None:
        for task in (self._reader, self._writer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._reader = self._writer = None
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
            self._ws = None
        if self.kernel_id:
            with contextlib.suppress(httpx.HTTPError):
                await self._http.delete(f"/api/kernels/{quote(self.kernel_id)}")
            self.kernel_id = None
        await self._http.aclose()

    async def is_alive(self) -> bool:
        if not self.kernel_id or self._ws is None or self._reader is None or self._reader.done():
            return False
        try:
            r = await self._http.get(f"/api/kernels/{quote(self.kernel_id)}")
        except httpx.HTTPError:
            return False
        return r.status_code == 200
