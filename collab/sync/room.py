"""Room: one live document in this process, its clients, its awareness, and the hooks
that store, broadcast and mirror every change made to its Doc, whoever made it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

from pycrdt import (
    Doc,
    Subscription,
    TransactionEvent,
    YSyncMessageType,
    create_awareness_message,
    create_sync_message,
    create_update_message,
    handle_sync_message,
    read_message,
)

from collab.sync.awareness import Limits, Presence, Reservations
from collab.sync.client import Client
from collab.sync.nbfile import NotebookFile
from collab.sync.protocol import ProtocolError
from collab.sync.store import UpdateStore
from collab.ws.wire import Frame

log = logging.getLogger(__name__)

# A Yjs update with no structs and an empty delete set.
_EMPTY_UPDATE = b"\x00\x00"


class DocumentTooLarge(ValueError):
    """An update that would take the document over the size cap."""


class Room:
    """The public part (other packages): `doc`, `kind`, `project_id`, `path`. Change
    `doc` inside `with room.doc.transaction(): ...`; the change is stored and broadcast
    like a client's."""

    def __init__(
        self,
        project_id: UUID,
        path: str,
        kind: str,
        doc_id: int,
        file: Path,
        store: UpdateStore,
        max_bytes: int,
        presence: Presence | None = None,
    ) -> None:
        self.project_id = project_id
        self.path = path
        self.kind = kind
        self.doc_id = doc_id
        self.file = file
        self.doc: Doc = Doc()
        self.store = store
        self.max_bytes = max_bytes
        self.size = 0
        self.clients: set[Client] = set()  # synced clients: they receive broadcasts
        self.holds = 0
        self.read_seq = 0
        self.rows_written = 0
        self.last_write = time.monotonic()  # when this process last stored an update
        # Set around a change so the observer knows who made it and whether to store it.
        self._author: UUID | None = None
        self._source: Client | None = None
        self._remote = False
        # Set while a client's update is applied: apply_sync stores the bytes it sent.
        self._client_update = False
        self.presence = presence or Presence(doc_id, Limits(), Reservations())
        self._subscription: Subscription | None = None
        self.on_change: Callable[[], None] | None = None
        # The file mirror's view (sha256 of the file we last wrote or read, its stat).
        self.file_sha: str | None = None
        self.file_stat: tuple[int, int] | None = None
        self.unload_handle: asyncio.TimerHandle | None = None
        self.closing = False
        # A notebook's file form, kept cell by cell for the mirror (made on first use).
        self.notebook_file: NotebookFile | None = None

    def start(self) -> None:
        """Begin storing and broadcasting changes (after the stored state is loaded)."""
        self._subscription = self.doc.observe(self._on_transaction)

    def stop(self) -> None:
        if self._subscription is not None:
            self.doc.unobserve(self._subscription)
            self._subscription = None
        if self.notebook_file is not None:
            self.notebook_file.close()
            self.notebook_file = None

    # -- changes ------------------------------------------------------------------

    def _on_transaction(self, event: TransactionEvent) -> None:
        # Runs inside the commit of every transaction that changed the document; it must
        # not raise (pycrdt would re-raise from the writer's `with` block).
        try:
            update = event.update
            self.size += len(update)
            if not self._remote and not self._client_update:
                self.store.append(self.doc_id, update, self._author)
                self.rows_written += 1
                self.last_write = time.monotonic()
            # Framed once, written as the same bytes to every client.
            message = Frame(create_update_message(update))
            for client in list(self.clients):
                if client is not self._source:
                    client.send(message)
            if self.on_change is not None:
                self.on_change()
        except Exception:
            log.exception("room observer failed", extra={"event": "sync.observer_error"})

    async def stored(self) -> None:
        """Wait until every change made so far (by anyone) is committed to the log."""
        await self.store.barrier()

    def apply_remote(self, updates: list[bytes]) -> None:
        """Updates another process stored: broadcast them, do not store them again."""
        self._remote = True
        try:
            for update in updates:
                self.doc.apply_update(update)
        finally:
            self._remote = False

    def apply_sync(self, client: Client, body: bytes) -> bytes | None:
        """A client's SYNC message; returns our step-2 answer to its step 1."""
        if body[0] != YSyncMessageType.SYNC_STEP1 and self.size + len(body) > self.max_bytes:
            raise DocumentTooLarge(f"a document is at most {self.max_bytes} bytes")
        is_update = body[0] != YSyncMessageType.SYNC_STEP1
        self._author, self._source = client.account_id, client
        self._client_update = is_update
        try:
            reply = handle_sync_message(body, self.doc)
        except ValueError as exc:
            raise ProtocolError(f"invalid update: {exc}") from None
        except BaseException as exc:
            # Yrs reports some malformed input as a Rust panic (pyo3 PanicException, a
            # BaseException): that is the client's bad update, not the server's failure.
            if type(exc).__name__ == "PanicException":
                raise ProtocolError("invalid update") from None
            raise
        finally:
            self._author, self._source = None, None
            self._client_update = False
        if is_update:
            # Store what the client sent, not what the document integrated: an update
            # whose dependencies have not arrived waits inside the CRDT, unseen by the
            # observer, yet it is acknowledged, so it must be in the log.
            update = read_message(body[1:])
            if update != _EMPTY_UPDATE:
                self.store.append(self.doc_id, update, client.account_id)
                self.rows_written += 1
                self.last_write = time.monotonic()
        return reply

    def apply_as(self, author: UUID | None, change: Callable[[], None]) -> None:
        """Run a server-side change attributed to `author` (history restore). `change`
        opens its own transaction: jupyter-ydoc's models cannot be built inside one."""
        self._author = author
        try:
            change()
        finally:
            self._author = None

    # -- clients --------------------------------------------------------------------

    def hello(self) -> bytes:
        return create_sync_message(self.doc)

    def add(self, client: Client) -> None:
        """The client has our step 2: from now on it gets every update, and everyone's
        presence."""
        self.clients.add(client)
        self.send_presence(client)

    def remove(self, client: Client) -> None:
        self.clients.discard(client)
        self._broadcast_presence(self.presence.remove(client))

    def send_presence(self, client: Client) -> None:
        update = self.presence.snapshot()
        if update is not None:
            client.send(create_awareness_message(update))

    # -- awareness ------------------------------------------------------------------

    def apply_awareness(self, client: Client, update: bytes) -> None:
        """Relay a client's awareness update, with the account attached by us so that
        nobody can pose as someone else, and only for client ids that are its own."""
        self._broadcast_presence(self.presence.apply(client, update))

    def expire_presence(self, timeout: float) -> None:
        self._broadcast_presence(self.presence.expire(timeout))

    def _broadcast_presence(self, update: bytes | None) -> None:
        if update is None:
            return
        message = Frame(create_awareness_message(update))
        for client in list(self.clients):
            client.send(message)
