"""The file mirror's record in PostgreSQL: the hash of the file content the server last
wrote or read, and the merge base (that content as a document value). Read and changed
under the document row's lock, so that processes take turns writing or merging a file."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg


@dataclass
class FileRecord:
    sha: str | None
    base: bytes | None
    # The document's current name: a room whose path differs was moved or deleted.
    path: str
    _conn: asyncpg.Connection
    _doc_id: int

    async def set(self, sha: str, base: bytes) -> None:
        await self._conn.execute(
            "UPDATE yjs_documents SET file_sha256 = $2, file_base = $3 WHERE doc_id = $1",
            self._doc_id,
            sha,
            base,
        )
        self.sha, self.base = sha, base


@contextlib.asynccontextmanager
async def locked(pool: asyncpg.Pool, doc_id: int) -> AsyncIterator[FileRecord]:
    """The document's file record, locked until the block ends (its changes commit
    then). NO KEY UPDATE: appending updates (a foreign key share lock) is not blocked."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """SELECT file_sha256, file_base, path FROM yjs_documents WHERE doc_id = $1
               FOR NO KEY UPDATE""",
            doc_id,
        )
        if row is None:
            raise LookupError(f"no document {doc_id}")
        yield FileRecord(row["file_sha256"], row["file_base"], row["path"], conn, doc_id)


async def read(pool: asyncpg.Pool, doc_id: int) -> tuple[str | None, bytes | None]:
    row = await pool.fetchrow(
        "SELECT file_sha256, file_base FROM yjs_documents WHERE doc_id = $1", doc_id
    )
    return (row["file_sha256"], row["file_base"]) if row else (None, None)
