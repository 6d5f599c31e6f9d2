"""Client: one y-websocket connection to a room, with a bounded send queue so that a
client that stops reading is disconnected instead of slowing the room."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from uuid import UUID

from starlette.websockets import WebSocket

from collab.ws.outbox import CLOSE_SLOW_CONSUMER, Outbox
from collab.ws.wire import Frame

log = logging.getLogger(__name__)


class Client:
    def __init__(self, websocket: WebSocket, account_id: UUID, name: str, queue: int) -> None:
        self.websocket = websocket
        self.account_id = account_id
        self.name = name
        self.outbox = Outbox(websocket, queue)
        self.closed = self.outbox.closed
        # Called once when the client is closed by us (the room drops it at once rather
        # than when its socket finally goes away).
        self.on_close: Callable[[], None] | None = None
        self.reader: asyncio.Task[None] | None = None
        self.reader_cancelled = False
        # Awareness client ids this connection announced; only it may change them.
        self.awareness_ids: set[int] = set()
        # How many SYNC step-2/update messages it sent, for the sync-status ack.
        self.updates_received = 0
        # Updates dropped because the account may only view the project.
        self.refused_updates = 0
        # (store barrier, count) pairs not yet acknowledged, in commit order.
        self.acks: deque[tuple[asyncio.Future[None], int]] = deque()

    @property
    def close_code(self) -> int | None:
        return self.outbox.close_code

    def send(self, message: bytes | Frame) -> bool:
        """Queue one binary message (a Frame: one framed for many clients); never blocks.
        A full queue closes the client."""
        if self.closed.is_set():
            return False
        if self.outbox.put(message):
            return True
        log.warning(
            "slow document client disconnected",
            extra={"event": "sync.slow_consumer", "account_id": str(self.account_id)},
        )
        self.close(CLOSE_SLOW_CONSUMER, "slow consumer")
        return False

    def close(self, code: int, reason: str = "", drop: bool = False) -> None:
        if self.closed.is_set():
            return
        self.outbox.close(code, reason, drop)
        if self.on_close is not None:
            self.on_close()
        # Closed from elsewhere (a broadcast found its queue full, shutdown): stop its
        # reader too, which may wait on a client that never sends or reads again.
        if self.reader is not None and self.reader is not asyncio.current_task():
            self.reader_cancelled = True
            self.reader.cancel()

    def revoke(self, code: int, reason: str) -> None:
        """Its credential or its access to the project is gone: close now, and drop what
        is queued for it (updates it may no longer see)."""
        self.close(code, reason, drop=True)

    def gone(self, code: int) -> None:
        """The client went away."""
        self.outbox.client_gone(code)
