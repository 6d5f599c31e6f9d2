"""Client: one y-websocket connection to a room, with a bounded send queue so that a
client that stops reading is disconnected instead of slowing the room."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from uuid import UUID

from starlette.websockets import WebSocket, WebSocketState

from collab.sync.protocol import CLOSE_SLOW_CONSUMER

log = logging.getLogger(__name__)


class Client:
    def __init__(self, websocket: WebSocket, account_id: UUID, name: str, queue: int) -> None:
        self.websocket = websocket
        self.account_id = account_id
        self.name = name
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(queue)
        self.closed = asyncio.Event()
        # Called once when the client is closed by us (the room drops it at once rather
        # than when its socket finally goes away).
        self.on_close: Callable[[], None] | None = None
        self.reader: asyncio.Task[None] | None = None
        self.reader_cancelled = False
        self.close_code: int | None = None
        self.close_reason = ""
        # Awareness client ids this connection announced; only it may change them.
        self.awareness_ids: set[int] = set()
        # How many SYNC step-2/update messages it sent, for the sync-status ack.
        self.updates_received = 0
        # (store barrier, count) pairs not yet acknowledged, in commit order.
        self.acks: deque[tuple[asyncio.Future[None], int]] = deque()

    def send(self, message: bytes) -> bool:
        """Queue one binary message; never blocks. A full queue closes the client."""
        if self.closed.is_set():
            return False
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            log.warning(
                "slow document client disconnected",
                extra={"event": "sync.slow_consumer", "account_id": str(self.account_id)},
            )
            self.close(CLOSE_SLOW_CONSUMER, "slow consumer")
            return False
        return True

    def close(self, code: int, reason: str = "") -> None:
        if self.closed.is_set():
            return
        self.close_code = code
        self.close_reason = reason[:120]
        self.closed.set()
        if self.on_close is not None:
            self.on_close()
        # Closed from elsewhere (a broadcast found its queue full, shutdown): stop its
        # reader too, which may wait on a client that never sends or reads again.
        if self.reader is not None and self.reader is not asyncio.current_task():
            self.reader_cancelled = True
            self.reader.cancel()
        while True:
            try:
                self._queue.put_nowait(None)
                break
            except asyncio.QueueFull:
                self._queue.get_nowait()

    async def run_writer(self) -> None:
        try:
            while True:
                message = await self._queue.get()
                if message is None:
                    break
                await self.websocket.send_bytes(message)
        except Exception:
            self.closed.set()
        finally:
            ws = self.websocket
            if (
                self.close_code is not None
                and ws.application_state == WebSocketState.CONNECTED
                and ws.client_state == WebSocketState.CONNECTED
            ):
                try:
                    await ws.close(self.close_code, reason=self.close_reason)
                except Exception:
                    pass
