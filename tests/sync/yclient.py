"""A y-websocket client for tests: a pycrdt Doc kept in sync with the server using
pycrdt's own sync helpers, with the sync-status acknowledgements counted."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import websockets
from pycrdt import (
    Decoder,
    Doc,
    Text,
    YMessageType,
    YSyncMessageType,
    create_awareness_message,
    create_sync_message,
    create_update_message,
    handle_sync_message,
    read_message,
)

SYNC_STATUS = 8


class YClient:
    def __init__(self, conn: Any, doc: Doc | None = None) -> None:
        self.conn = conn
        self.doc: Doc = doc or Doc()
        self.synced = asyncio.Event()
        # SYNC step-2 and update messages sent, in order: the server's acknowledgement
        # counts the same messages.
        self.sent_updates = 0
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self.acked = 0
        self.ack_event = asyncio.Event()
        self.awareness: list[bytes] = []
        self.received = 0
        self._remote = False
        self._task: asyncio.Task[None] | None = None
        self._sub = self.doc.observe(self._on_local)
        self.closed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    @property
    def text(self) -> Text:
        return self.doc.get("source", type=Text)

    def _on_local(self, event: Any) -> None:
        if self._remote:
            return
        self.sent_updates += 1
        self._outbox.put_nowait(create_update_message(event.update))

    async def _send_loop(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await self.conn.send(await self._outbox.get())

    async def start(self) -> None:
        self._outbox.put_nowait(create_sync_message(self.doc))
        self._sender = asyncio.create_task(self._send_loop())
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for message in self.conn:
                assert isinstance(message, bytes)
                self.received += 1
                kind = message[0]
                if kind == YMessageType.SYNC:
                    self._remote = True
                    try:
                        reply = handle_sync_message(message[1:], self.doc)
                    finally:
                        self._remote = False
                    if reply is not None:
                        self.sent_updates += 1
                        self._outbox.put_nowait(reply)
                    if message[1] == YSyncMessageType.SYNC_STEP2:
                        self.synced.set()
                elif kind == YMessageType.AWARENESS:
                    self.awareness.append(read_message(message[1:]))
                elif kind == SYNC_STATUS:
                    self.acked = Decoder(message[1:]).read_var_uint()
                    self.ack_event.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            if not self.closed.done():
                self.closed.set_result(self.conn.close_code)

    async def send_awareness(self, update: bytes) -> None:
        self._outbox.put_nowait(create_awareness_message(update))

    async def send_raw(self, data: bytes | str) -> None:
        self._outbox.put_nowait(data)  # type: ignore[arg-type]

    async def wait_acked(self, timeout: float = 20) -> None:
        async def wait() -> None:
            while self.acked < self.sent_updates:
                self.ack_event.clear()
                await self.ack_event.wait()

        await asyncio.wait_for(wait(), timeout)

    async def close(self) -> None:
        self.doc.unobserve(self._sub)
        await self.conn.close()
        if self._sender is not None:
            self._sender.cancel()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task


def yjs_url(served: Any, project_id: Any, path: str, key: str, acks: bool = True) -> str:
    query = f"?token={key}" + ("&acks=1" if acks else "")
    return f"{served.ws}/yjs/{project_id}/{path}{query}"


@contextlib.asynccontextmanager
async def connect(
    served: Any, project_id: Any, path: str, key: str, doc: Doc | None = None, acks: bool = True
) -> AsyncIterator[YClient]:
    async with websockets.connect(
        yjs_url(served, project_id, path, key, acks), max_size=None
    ) as conn:
        client = YClient(conn, doc)
        await client.start()
        try:
            yield client
        finally:
            await client.close()


async def until_equal(value: Any, expected: Any, timeout: float = 15) -> None:
    """`until` for an equality: a timeout shows what differs."""
    try:
        await until(lambda: value() == expected, timeout)
    except AssertionError:
        assert value() == expected
        raise


async def until(predicate: Any, timeout: float = 15) -> None:
    """Wait for a condition that another process or client makes true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def stored_text(served: Any, project: Any, path: str) -> str:
    """The document as stored in PostgreSQL (every row of its update log)."""
    rows = await served.services.pool.fetch(
        """SELECT u.data FROM yjs_updates u JOIN yjs_documents d USING (doc_id)
           WHERE d.project_id = $1 AND d.path = $2 ORDER BY u.seq""",
        project,
        path,
    )
    doc = Doc()
    for r in rows:
        doc.apply_update(r["data"])
    return str(doc.get("source", type=Text))
