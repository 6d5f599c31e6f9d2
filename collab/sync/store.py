"""The Postgres update store: document ids, the append-only update log written by group
commit (one transaction per event-loop tick for every room), and reads for loading and
for other processes. (The file mirror's record is `filebase`.)"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

log = logging.getLogger(__name__)

CHANNEL = "collab_yjs"
# Advisory lock namespace (two-int form) for a document's log: writers of one document
# commit in seq order, so a reader that saw seq N has seen every row below it.
_LOCK_CLASS = 0x5953
# About a minute of retries before a batch is given up.
WRITE_ATTEMPTS = 16


def lock_key(doc_id: int) -> int:
    return doc_id % (2**31)


@dataclass
class Row:
    seq: int
    data: bytes
    first_at: datetime
    last_at: datetime
    authors: list[UUID]
    merged: int


@dataclass
class _Pending:
    doc_id: int
    data: bytes
    author: UUID | None


class UpdateStore:
    def __init__(self, pool: asyncpg.Pool, origin: str) -> None:
        self.pool = pool
        self.origin = origin
        self._pending: list[_Pending] = []
        self._batch_done: asyncio.Future[None] | None = None
        self._last_done: asyncio.Future[None] | None = None
        self._scheduled = False
        self._flushing = False
        self._closed = False

    # -- documents ---------------------------------------------------------------

    async def doc_id(self, project_id: UUID, path: str) -> int:
        doc_id = await self.pool.fetchval(
            """INSERT INTO yjs_documents (project_id, path) VALUES ($1, $2)
               ON CONFLICT (project_id, path) DO NOTHING RETURNING doc_id""",
            project_id,
            path,
        )
        if doc_id is None:
            doc_id = await self.pool.fetchval(
                "SELECT doc_id FROM yjs_documents WHERE project_id = $1 AND path = $2",
                project_id,
                path,
            )
        return int(doc_id)

    async def find_doc(self, project_id: UUID, path: str) -> int | None:
        value = await self.pool.fetchval(
            "SELECT doc_id FROM yjs_documents WHERE project_id = $1 AND path = $2",
            project_id,
            path,
        )
        return None if value is None else int(value)

    # -- reading -----------------------------------------------------------------

    async def rows(self, doc_id: int, after: int = 0, upto: int | None = None) -> list[Row]:
        records = await self.pool.fetch(
            """SELECT seq, data, first_at, last_at, authors, merged FROM yjs_updates
               WHERE doc_id = $1 AND seq > $2 AND ($3::bigint IS NULL OR seq <= $3)
               ORDER BY seq""",
            doc_id,
            after,
            upto,
        )
        return [Row(**dict(r)) for r in records]

    async def foreign_rows(self, doc_id: int, after: int) -> tuple[list[bytes], int]:
        """Rows after `after` written by other processes, and the highest seq seen."""
        records = await self.pool.fetch(
            """SELECT seq, data, origin FROM yjs_updates WHERE doc_id = $1 AND seq > $2
               ORDER BY seq""",
            doc_id,
            after,
        )
        last = max((r["seq"] for r in records), default=after)
        return [r["data"] for r in records if r["origin"] != self.origin], last

    async def store_first(self, doc_id: int, data: bytes) -> list[Row]:
        """Store `data` as the document's first row unless it has rows already; returns
        the rows it had (empty if ours went in). Two processes loading one file at once
        thus agree on a single initial state."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await locked_rows(conn, doc_id)
            if not rows:
                await conn.execute(
                    "INSERT INTO yjs_updates (doc_id, data, origin) VALUES ($1, $2, $3)",
                    doc_id,
                    data,
                    self.origin,
                )
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, f"{doc_id}:{self.origin}")
            return rows

    async def row_meta(self, doc_id: int) -> list[Row]:
        """The log without the update bytes (for listing versions)."""
        records = await self.pool.fetch(
            """SELECT seq, ''::bytea AS data, first_at, last_at, authors, merged
               FROM yjs_updates WHERE doc_id = $1 ORDER BY seq""",
            doc_id,
        )
        return [Row(**dict(r)) for r in records]

    async def max_seq(self, doc_id: int) -> int:
        value = await self.pool.fetchval(
            "SELECT coalesce(max(seq), 0) FROM yjs_updates WHERE doc_id = $1", doc_id
        )
        return int(value)

    # -- group commit ------------------------------------------------------------

    def append(self, doc_id: int, data: bytes, author: UUID | None) -> None:
        """Queue an update; it is written with everything else queued in this tick."""
        if self._closed:
            raise RuntimeError("the update store is closed")
        self._pending.append(_Pending(doc_id, data, author))
        if self._batch_done is None:
            self._batch_done = asyncio.get_running_loop().create_future()
        if not self._scheduled and not self._flushing:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start_flush)

    def barrier(self) -> asyncio.Future[None]:
        """A future that completes when everything appended so far is committed."""
        if self._batch_done is not None:
            return self._batch_done
        if self._last_done is not None:
            return self._last_done
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def _start_flush(self) -> None:
        self._scheduled = False
        if self._flushing or not self._pending:
            return
        self._flushing = True
        asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        try:
            while self._pending:
                batch, done = self._pending, self._batch_done
                self._pending, self._batch_done = [], None
                assert done is not None
                self._last_done = done
                try:
                    await self._write_retrying(batch)
                except BaseException as exc:
                    # Not stored, so never acknowledged; clients with acknowledgements are
                    # closed and resend what the server lacks when they reconnect.
                    log.critical(
                        "updates not stored",
                        extra={
                            "event": "sync.store_failed",
                            "doc_ids": sorted({p.doc_id for p in batch}),
                            "updates": len(batch),
                        },
                    )
                    if not done.done():
                        done.set_exception(exc if isinstance(exc, Exception) else RuntimeError())
                        done.exception()  # mark retrieved
                    if not isinstance(exc, Exception):
                        raise
                else:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._flushing = False

    async def _write_retrying(self, batch: list[_Pending]) -> None:
        # The updates are already in the live documents: giving up on a database hiccup
        # would leave them unstored for good, so retry (acknowledgements wait meanwhile).
        delay = 0.05
        for attempt in range(WRITE_ATTEMPTS):
            try:
                await self._write(batch)
                return
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
                if attempt == WRITE_ATTEMPTS - 1:
                    raise
                log.exception(
                    "update store write failed; retrying", extra={"event": "sync.store_error"}
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _write(self, batch: list[_Pending]) -> None:
        # One statement, its own transaction (migrations/0014_yjs_append.sql): the
        # documents' locks, the rows and the NOTIFYs in one round trip.
        await self.pool.execute(
            "SELECT yjs_append($1::bigint[], $2::bytea[], $3::uuid[], $4, $5, $6)",
            [p.doc_id for p in batch],
            [p.data for p in batch],
            [p.author for p in batch],
            self.origin,
            _LOCK_CLASS,
            CHANNEL,
        )

    async def drain(self) -> None:
        """Wait until every queued update is committed (shutdown, room unload)."""
        while self._pending or self._flushing:
            if self._pending and not self._flushing and not self._scheduled:
                self._start_flush()
            try:
                await asyncio.shield(self.barrier())
            except Exception:
                return
            await asyncio.sleep(0)

    async def close(self) -> None:
        await self.drain()
        self._closed = True


async def lock_document(conn: asyncpg.Connection, doc_id: int) -> None:
    """Inside a transaction: block the document's writers until it ends."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_CLASS, lock_key(doc_id))


async def locked_rows(conn: asyncpg.Connection, doc_id: int) -> list[Row]:
    """Inside a transaction: block the document's writers, then read its whole log."""
    await lock_document(conn, doc_id)
    records = await conn.fetch(
        """SELECT seq, data, first_at, last_at, authors, merged FROM yjs_updates
           WHERE doc_id = $1 ORDER BY seq""",
        doc_id,
    )
    return [Row(**dict(r)) for r in records]


def describe(rows: list[Row]) -> dict[str, Any]:
    return {"rows": len(rows), "bytes": sum(len(r.data) for r in rows)}
