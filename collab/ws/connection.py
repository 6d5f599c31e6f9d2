"""Connection: one authenticated /ws client, with a bounded send queue so that a client
that stops reading is disconnected instead of growing the server's memory."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket

from collab.auth.identity import Identity
from collab.services import Services
from collab.ws.outbox import CLOSE_SLOW_CONSUMER, Outbox

log = logging.getLogger(__name__)

# Close codes, documented in docs/protocol.md.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403

CloseHook = Callable[[], Awaitable[None] | None]


class Connection:
    def __init__(self, websocket: WebSocket, identity: Identity, services: Services) -> None:
        self.websocket = websocket
        self.identity = identity
        self.services = services
        self.account = identity.account
        self.outbox = Outbox(websocket, services.settings.ws_send_queue)
        self.closed = self.outbox.closed
        self._close_hooks: list[CloseHook] = []

    @property
    def close_code(self) -> int | None:
        return self.outbox.close_code

    def send(self, message: dict[str, Any] | str) -> bool:
        """Queue a message (a dict, or JSON already encoded). False if the client is gone.

        Never blocks: a client whose queue is full is too slow and is disconnected; it can
        reconnect and resume its feeds from their cursors.
        """
        if self.closed.is_set():
            return False
        text = message if isinstance(message, str) else json.dumps(message, default=str)
        if self.outbox.put(text):
            return True
        log.warning(
            "slow consumer disconnected",
            extra={"event": "ws.slow_consumer", "account_id": str(self.account.account_id)},
        )
        self.close(CLOSE_SLOW_CONSUMER)
        return False

    async def wait_for_room(self) -> None:
        await self.outbox.wait_for_room()

    def close(self, code: int = 1000) -> None:
        self.outbox.close(code)

    def revoke(self, code: int, reason: str) -> None:
        """What it was authenticated with is gone: close now, dropping what is queued."""
        if not self.closed.is_set():
            log.info(
                "ws revoked",
                extra={"event": "ws.revoked", "account_id": str(self.account.account_id)},
            )
        self.outbox.close(code, reason, drop=True)

    def disconnected(self, code: int) -> None:
        """The client went away: nothing more can be sent."""
        self.outbox.client_gone(code)

    def on_close(self, hook: CloseHook) -> None:
        self._close_hooks.append(hook)

    def start_writer(self) -> asyncio.Task[None]:
        return self.outbox.start()

    async def run_close_hooks(self) -> None:
        for hook in self._close_hooks:
            try:
                result = hook()
                if result is not None:
                    await result
            except Exception:
                log.exception("close hook failed", extra={"event": "ws.close_hook_error"})
