"""A server process's liveness in PostgreSQL: a session advisory lock held on its own
connection for as long as the process lives, so that other processes can tell whether the
rows a process left behind (its kernels) still have a live owner."""

from __future__ import annotations

import contextlib
import hashlib
import uuid

import asyncpg


def lock_key(namespace: str, host: str) -> int:
    """The advisory lock key of `host` in `namespace` (signed 64-bit)."""
    digest = hashlib.sha256(f"{namespace}:{host}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Liveness:
    def __init__(self, database_url: str, namespace: str) -> None:
        self.database_url = database_url
        self.namespace = namespace
        self.host = uuid.uuid4().hex
        self._holder: asyncpg.Connection | None = None

    async def hold(self) -> bool:
        """Take the lock if this process does not hold it (first call, or after its
        connection was lost); True when it was taken now."""
        if self._holder is not None and not self._holder.is_closed():
            return False
        holder = await asyncpg.connect(self.database_url)
        await holder.execute("SELECT pg_advisory_lock($1)", lock_key(self.namespace, self.host))
        self._holder = holder
        return True

    async def gone(self, conn: asyncpg.Connection, host: str) -> bool:
        """True when no live process holds `host`'s lock (tried, and let go at once, on
        `conn`)."""
        if host == self.host:
            return False
        key = lock_key(self.namespace, host)
        if await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
            await conn.execute("SELECT pg_advisory_unlock($1)", key)
            return True
        return False

    async def close(self) -> None:
        if self._holder is not None:
            with contextlib.suppress(Exception):
                await self._holder.close()
            self._holder = None
