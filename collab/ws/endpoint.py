"""The /ws loop: authenticate, then read frames, run each as a task, answer by id."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from starlette.websockets import WebSocket

from collab.auth.identity import identify, origin_allowed
from collab.db.errors import CLOSE_TRY_AGAIN, database_unavailable, unavailable
from collab.errors import ApiError
from collab.services import Services
from collab.ws.connection import CLOSE_FORBIDDEN_ORIGIN, CLOSE_UNAUTHENTICATED, Connection
from collab.ws.dispatch import NO_REPLY, Api, Reply, parse_frame
from collab.ws.ordering import Sequencer, after, order_key

log = logging.getLogger(__name__)


async def authenticate_websocket(websocket: WebSocket, services: Services) -> Any:
    """Accept the socket and return its Identity, or close it with 4401 / 4403 and return None.

    The close codes can only reach a client after the handshake, so we accept first.
    """
    try:
        identity, reason = await identify(websocket, services.sessions, services.keys)
    except Exception as exc:
        if not database_unavailable(exc):
            raise
        log.warning("database unreachable", extra={"event": "ws.unavailable"})
        await websocket.accept()
        await websocket.close(CLOSE_TRY_AGAIN, reason="database unreachable; retry")
        return None
    await websocket.accept()
    if identity is None:
        log.info(
            "ws refused",
            extra={"event": "ws.unauthenticated", "path": websocket.url.path, "reason": reason},
        )
        await websocket.close(CLOSE_UNAUTHENTICATED, reason=(reason or "unauthenticated")[:100])
        return None
    if identity.via == "cookie" and not origin_allowed(websocket, services.settings):
        log.info(
            "ws refused",
            extra={"event": "ws.forbidden_origin", "origin": websocket.headers.get("origin")},
        )
        await websocket.close(CLOSE_FORBIDDEN_ORIGIN, reason="origin not allowed")
        return None
    return identity


async def ws_endpoint(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    api: Api = websocket.app.state.api
    identity = await authenticate_websocket(websocket, services)
    if identity is None:
        return
    conn = Connection(websocket, identity, services)
    watch = services.extra["revocations"].watch(identity)
    watch.set_closer(conn.revoke)
    settings = services.settings
    in_flight = asyncio.Semaphore(settings.ws_max_in_flight)
    tasks: set[asyncio.Task[None]] = set()
    sequencer = Sequencer()
    started = time.monotonic()
    log.info(
        "ws connected",
        extra={
            "event": "ws.connect",
            "account_id": str(conn.account.account_id),
            "via": identity.via,
        },
    )

    async def run(
        msg_id: Any, message: dict[str, Any], previous: asyncio.Task[None] | None
    ) -> None:
        try:
            await after(previous)
            if watch.revoked or conn.closed.is_set():
                return  # read before the revocation arrived; never run
            result = await api.handle(conn, message)
            if isinstance(result, Reply):
                conn.send({"id": msg_id, "result": result.result, **result.extra})
            elif result is not NO_REPLY:
                conn.send({"id": msg_id, "result": result})
        except ApiError as err:
            conn.send({"id": msg_id, "error": err.to_json()})
        except Exception as exc:
            if database_unavailable(exc):
                log.warning("database unreachable", extra={"event": "ws.unavailable"})
                conn.send({"id": msg_id, "error": unavailable().to_json()})
                return
            log.exception(
                "ws operation failed",
                extra={"event": "ws.error", "account_id": str(conn.account.account_id)},
            )
            conn.send(
                {"id": msg_id, "error": {"code": "internal", "message": "internal server error"}}
            )
        finally:
            in_flight.release()

    async def read_loop() -> None:
        while True:
            frame = await websocket.receive()
            if frame["type"] == "websocket.disconnect":
                conn.disconnected(frame.get("code", 1000))
                return
            text = frame.get("text")
            if text is None:
                conn.send(
                    {
                        "id": None,
                        "error": {
                            "code": "binary_not_supported",
                            "message": "/ws takes text frames of JSON",
                        },
                    }
                )
                continue
            try:
                msg_id, message = parse_frame(text, settings.ws_max_message_bytes)
            except ApiError as err:
                conn.send({"id": None, "error": err.to_json()})
                continue
            await in_flight.acquire()
            task = sequencer.spawn(order_key(message), functools.partial(run, msg_id, message))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    writer = conn.start_writer()
    reader = asyncio.create_task(read_loop())
    closed = asyncio.create_task(conn.closed.wait())
    try:
        await asyncio.wait([reader, closed], return_when=asyncio.FIRST_COMPLETED)
        if reader.done() and reader.exception() is not None:
            conn.disconnected(1006)
    finally:
        services.extra["revocations"].unwatch(watch)
        for task in [reader, closed, *tasks]:
            task.cancel()
        conn.close(conn.close_code or 1000)
        await conn.run_close_hooks()
        await writer
        log.info(
            "ws disconnected",
            extra={
                "event": "ws.disconnect",
                "account_id": str(conn.account.account_id),
                "code": conn.close_code,
                "seconds": round(time.monotonic() - started, 3),
            },
        )
