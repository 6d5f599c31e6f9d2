"""Moving and deleting documents with their files: the `yjs_documents` rows under a path
follow a rename (history kept) or become tombstones (a new file there starts fresh), in
the same transaction that holds the rows' locks while the file operation runs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from collab.sync.store import CHANNEL

# yjs_documents.path of a deleted document: no client path starts with "/", so the name
# is free again, and the rows (its history) stay recoverable by doc_id.
TOMBSTONE = "/deleted/{doc_id}/{path}"
RETIRE_PREFIX = "retire:"
# As collab.sync.protocol.CLOSE_DELETED (not imported: that module is the wire's).
_CLOSE_DELETED = 4410


@dataclass
class Moved:
    doc_id: int
    path: str
    to: str | None  # None: deleted
    code: int


def tombstone(doc_id: int, path: str) -> str:
    return TOMBSTONE.format(doc_id=doc_id, path=path)


def retire_payload(moved: Moved) -> str:
    return f"{RETIRE_PREFIX}{moved.doc_id}:{moved.code}:{moved.to or ''}"


def parse_retire(payload: str) -> tuple[int, int, str | None] | None:
    if not payload.startswith(RETIRE_PREFIX):
        return None
    doc_text, code_text, to = payload[len(RETIRE_PREFIX) :].split(":", 2)
    return int(doc_text), int(code_text), to or None


_UNDER = """project_id = $1 AND (path = $2 OR left(path, length($2) + 1) = $2 || '/')"""


@contextlib.asynccontextmanager
async def relocating(
    pool: asyncpg.Pool, project_id: UUID, path: str, to: str | None, code: int
) -> AsyncIterator[list[Moved]]:
    """Move (or, with `to` None, tombstone) the documents at `path` and under it. The
    body performs the file operation while the rows are locked (FOR UPDATE, which waits
    for and then blocks every mirror write's record lock): if it raises, nothing
    changes; otherwise the change commits and every process is told (NOTIFY)."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            f"SELECT doc_id, path FROM yjs_documents WHERE {_UNDER} ORDER BY doc_id FOR UPDATE",
            project_id,
            path,
        )
        moved = [
            Moved(
                r["doc_id"],
                r["path"],
                None if to is None else to + r["path"][len(path) :],
                code,
            )
            for r in rows
        ]
        if to is not None:
            # Rows left at the target by a file deleted outside the server: tombstoned,
            # so the moved document takes the name.
            stale = await conn.fetch(
                f"SELECT doc_id, path FROM yjs_documents WHERE {_UNDER} FOR UPDATE",
                project_id,
                to,
            )
            # (A room may have one open before its first write created the file.)
            moved = [Moved(r["doc_id"], r["path"], None, _CLOSE_DELETED) for r in stale] + moved
        for m in moved:
            await conn.execute(
                "UPDATE yjs_documents SET path = $2 WHERE doc_id = $1",
                m.doc_id,
                m.to if m.to is not None else tombstone(m.doc_id, m.path),
            )
            # Delivered at commit, to every process (ours skips rooms it has retired).
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, retire_payload(m))
        yield moved
