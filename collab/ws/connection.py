"""Connection: one authenticated /ws client, with a bounded send queue so that a client
that stops reading is disconnected instead of growing the server's memory."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from collab.auth.identity import Identity
from collab.services import Services

log = logging.getLogger(__name__)

# Close codes, documented in docs/protocol.md.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403
CLOSE_SLOW_CONSUMER = 4008
CLOSE_TIMEOUT = 30.0

CloseHook = Callable[[], Awaitable[None] | None]


class Connection:
    def __init__(self, websocket: WebSocket, identity: Identity, services: Services) -> None:
        self.websocket = websocket
        self.identity = identity
        self.services = services
        self.account = identity.account
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(services.settings.ws_send_queue)
        self._close_hooks: list[CloseHook] = []
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._client_gone = False
        self._writer: asyncio.Task[None] | None = None

    def send(self, message: dict[str, Any] | str) -> bool:
        """Queue a message (a dict, or JSON already encoded). False if the client is gone.

        Never blocks: a client whose queue is full is too slow and is disconnected; it can
        reconnect and resume its feeds from their cursors.
        """
        if self.closed.is_set():
            return False
        text = message if isinstance(message, str) else json.dumps(message, default=str)
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            log.warning(
                "slow consumer disconnected",
                extra={"event": "ws.slow_consumer", "account_id": str(self.account.account_id)},
            )
            self.close(CLOSE_SLOW_CONSUMER)
            return False
        return True

    async def wait_for_room(self) -> None:
        """Wait while the send queue is over half full: long replays are paced by the
        client instead of overflowing the queue and closing it as too slow."""
        limit = max(1, self._queue.maxsize // 2)
        while self._queue.qsize() >= limit and not self.closed.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    def close(self, code: int = 1000) -> None:
        """Close from the server side; the writer sends the close frame after what is queued,
        or at once when the client is too slow to take what is queued."""
        if self.closed.is_set():
            return
        self.close_code = code
        self.closed.set()
        if code == CLOSE_SLOW_CONSUMER and self._writer is not None:
            # The writer may be stuck behind a full socket; nothing queued will be sent.
            self._writer.cancel()
        while True:
            try:
                self._queue.put_nowait(None)
                break
            except asyncio.QueueFull:
                self._queue.get_nowait()

    def disconnected(self, code: int) -> None:
        """The client went away: nothing more can be sent."""
        if self.close_code is None:
            self.close_code = code
        self._client_gone = True
        self.close(code)

    def on_close(self, hook: CloseHook) -> None:
        self._close_hooks.append(hook)

    def start_writer(self) -> asyncio.Task[None]:
        self._writer = asyncio.create_task(self._run_writer())
        return self._writer

    async def _run_writer(self) -> None:
        try:
            while True:
                text = await self._queue.get()
                if text is None:
                    break
                await self.websocket.send_text(text)
        except asyncio.CancelledError:
            pass
        except Exception:
            # The socket went away under us.
            self._client_gone = True
            self.closed.set()
        if self._client_gone or self.websocket.application_state != WebSocketState.CONNECTED:
            return
        try:
            # Bounded: a client that never reads again does not hold this task forever.
            await asyncio.wait_for(self.websocket.close(self.close_code or 1000), CLOSE_TIMEOUT)
        except Exception:
            pass

    async def run_close_hooks(self) -> None:
        for hook in self._close_hooks:
            try:
                result = hook()
                if result is not None:
                    await result
            except Exception:
                log.exception("close hook failed", extra={"event": "ws.close_hook_error"})
