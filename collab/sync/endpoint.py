"""The /yjs/{project_id}/{path} WebSocket: authenticate, check membership and the path,
then run the y-websocket conversation between one client and its room."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from uuid import UUID

from pycrdt import YMessageType, YSyncMessageType
from starlette.websockets import WebSocket, WebSocketDisconnect

from collab.auth.revocation import Revocations, Watch
from collab.db.errors import CLOSE_TRY_AGAIN, database_unavailable
from collab.projects.store import role
from collab.services import Services
from collab.sync import kinds, paths
from collab.sync.awareness import PresenceTooLarge
from collab.sync.client import Client
from collab.sync.manager import RoomManager
from collab.sync.protocol import (
    CLOSE_BAD_PATH,
    CLOSE_INTERNAL,
    CLOSE_NO_ACCESS,
    CLOSE_PROTOCOL,
    CLOSE_TOO_LARGE,
    CLOSE_UNSUPPORTED_FILE,
    QUERY_AWARENESS,
    ProtocolError,
    parse,
    sync_status_message,
)
from collab.sync.room import DocumentTooLarge, Room
from collab.ws.endpoint import authenticate_websocket

log = logging.getLogger(__name__)

WRITER_GRACE = 5.0


async def may_open(services: Services, account: Any, project_id: UUID) -> str | None:
    """The account's access to the project's documents: its role, 'admin', or None."""
    if account.is_admin:
        return "admin"
    return await role(services.pool, project_id, account.account_id)


async def yjs_endpoint(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    manager: RoomManager = services.extra["rooms"]
    identity = await authenticate_websocket(websocket, services)
    if identity is None:
        return
    account = identity.account
    try:
        project_id = UUID(websocket.path_params["project_id"])
    except ValueError:
        await websocket.close(CLOSE_NO_ACCESS, reason="no such project")
        return
    try:
        path = paths.normalize(websocket.path_params["path"])
    except paths.BadPath as exc:
        await websocket.close(CLOSE_BAD_PATH, reason=str(exc))
        return
    revocations: Revocations = services.extra["revocations"]
    # Watched before membership is checked: a removal committed after the check reaches
    # this connection, one committed before it is seen by the check.
    watch = revocations.watch(identity, str(project_id))
    try:
        await _serve(websocket, services, manager, account, project_id, path, watch)
    finally:
        revocations.unwatch(watch)


async def _serve(
    websocket: WebSocket,
    services: Services,
    manager: RoomManager,
    account: Any,
    project_id: UUID,
    path: str,
    watch: Watch,
) -> None:
    try:
        allowed = await may_open(services, account, project_id)
    except Exception as exc:
        if not database_unavailable(exc):
            raise
        log.warning("database unreachable", extra={"event": "sync.unavailable"})
        await websocket.close(CLOSE_TRY_AGAIN, reason="database unreachable; retry")
        return
    if not allowed:
        await websocket.close(CLOSE_NO_ACCESS, reason="no such project, or not a member")
        return
    # A viewer's document updates are dropped here, never applied, stored or relayed;
    # the watch follows role changes while the connection is open.
    if not watch.role_changed:
        watch.read_only = allowed == "viewer"
    if watch.revoked:
        await websocket.close(watch.code, reason=watch.reason)
        return
    try:
        room = await manager.open(project_id, path)
    except paths.BadPath as exc:
        await websocket.close(CLOSE_BAD_PATH, reason=str(exc))
        return
    except DocumentTooLarge as exc:
        await websocket.close(CLOSE_TOO_LARGE, reason=str(exc))
        return
    except kinds.UnsupportedFile as exc:
        await websocket.close(CLOSE_UNSUPPORTED_FILE, reason=str(exc)[:120])
        return
    except Exception as exc:
        if database_unavailable(exc):
            log.warning("database unreachable", extra={"event": "sync.unavailable"})
            await websocket.close(CLOSE_TRY_AGAIN, reason="database unreachable; retry")
            return
        log.exception("document not opened", extra={"event": "sync.open_error"})
        await websocket.close(CLOSE_INTERNAL, reason="internal error")
        return
    acks = websocket.query_params.get("acks") in ("1", "true")
    client = Client(websocket, account.account_id, account.name, services.settings.sync_send_queue)
    client.on_close = lambda: room.remove(client)
    client.reader = asyncio.current_task()
    writer = client.outbox.start()
    # Online in the project for as long as this connection lives (collab/projects/presence.py).
    leave = services.extra["presence"].enter(project_id, account.account_id, path)
    try:
        watch.set_closer(client.revoke)
        client.send(room.hello())
        await _converse(
            websocket,
            room,
            client,
            acks,
            services.settings.sync_max_document_bytes,
            watch,
            manager,
        )
    except asyncio.CancelledError:
        if not client.reader_cancelled:
            raise
        # We closed this client from elsewhere; finish normally.
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()
    finally:
        leave()
        room.remove(client)
        client.close(client.close_code or 1000)
        await manager.close(room)
        # A client that stopped reading can hold its writer in a send forever.
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(writer, WRITER_GRACE)


async def _converse(
    websocket: WebSocket,
    room: Room,
    client: Client,
    acks: bool,
    max_bytes: int,
    watch: Watch,
    manager: RoomManager,
) -> None:
    while not client.closed.is_set():
        try:
            frame = await websocket.receive()
        except WebSocketDisconnect:
            return
        if watch.revoked:
            return  # arrived after the credential or the membership went: never applied
        retired = manager.retired(room)
        if retired is not None:
            # The file was moved or deleted: the message is refused, not applied.
            client.close(*retired)
            return
        if frame["type"] == "websocket.disconnect":
            client.gone(frame.get("code", 1000))
            return
        data = frame.get("bytes")
        if data is None:
            client.close(CLOSE_PROTOCOL, "y-websocket messages are binary")
            return
        if len(data) > max_bytes:
            client.close(CLOSE_TOO_LARGE, f"a message is at most {max_bytes} bytes")
            return
        try:
            _handle(room, client, data, acks, watch)
        except ProtocolError as exc:
            log.info("bad document message", extra={"event": "sync.protocol_error"})
            client.close(CLOSE_PROTOCOL, str(exc))
            return
        except (DocumentTooLarge, PresenceTooLarge) as exc:
            log.info("document message too large", extra={"event": "sync.too_large"})
            client.close(CLOSE_TOO_LARGE, str(exc))
            return
        except Exception:
            log.exception("document message failed", extra={"event": "sync.error"})
            client.close(CLOSE_INTERNAL, "internal error")
            return


def _handle(room: Room, client: Client, data: bytes, acks: bool, watch: Watch) -> None:
    message = parse(data)
    if (
        message.type == YMessageType.SYNC
        and message.sync_type != YSyncMessageType.SYNC_STEP1
        and watch.read_only
        and not watch.is_admin
    ):
        _refused(client)
        return
    if message.type == YMessageType.SYNC:
        reply = room.apply_sync(client, message.body)
        if reply is not None:
            client.send(reply)
            if client not in room.clients:
                room.add(client)
        if message.sync_type != YSyncMessageType.SYNC_STEP1:
            client.updates_received += 1
            if acks:
                _ack_when_stored(room, client, client.updates_received)
    elif message.type == YMessageType.AWARENESS:
        room.apply_awareness(client, message.body)
    elif message.type == QUERY_AWARENESS:
        room.send_presence(client)


def _refused(client: Client) -> None:
    """A viewer's update: dropped, counted, and reported (logged on the first and then
    every 100th, so that a misbehaving client cannot flood the log)."""
    client.refused_updates += 1
    if client.refused_updates == 1 or client.refused_updates % 100 == 0:
        log.warning(
            "document update from a viewer dropped",
            extra={
                "event": "sync.read_only_update",
                "account_id": str(client.account_id),
                "count": client.refused_updates,
            },
        )


def _ack_when_stored(room: Room, client: Client, count: int) -> None:
    """Acknowledge `count` once the batch holding this message's update commits. Messages
    that land in one batch share one acknowledgement carrying the highest count."""
    barrier = room.store.barrier()
    if client.acks and client.acks[-1][0] is barrier:
        client.acks[-1] = (barrier, count)
        return
    client.acks.append((barrier, count))
    barrier.add_done_callback(lambda _fut: _send_acks(client))


def _send_acks(client: Client) -> None:
    stored = 0
    while client.acks and client.acks[0][0].done():
        fut, count = client.acks.popleft()
        if fut.cancelled() or fut.exception() is not None:
            # Not stored: later counts would claim too much. The client reconnects and
            # sends what the server lacks in its sync step 2.
            client.acks.clear()
            client.close(CLOSE_INTERNAL, "the update store failed")
            return
        stored = count
    if stored:
        client.send(sync_status_message(stored))
