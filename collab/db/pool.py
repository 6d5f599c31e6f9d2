"""The asyncpg connection pool and its type codecs."""

from __future__ import annotations

import json
from typing import Any

import asyncpg


async def _init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def connect(url: str, **kwargs: Any) -> asyncpg.Connection:
    """A single connection with the same codecs as the pool (listeners, migrations)."""
    conn = await asyncpg.connect(url, **kwargs)
    await _init_connection(conn)
    return conn


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What the pool does to a connection given back, besides rolling back a transaction
    left open (asyncpg always does that): nothing. asyncpg's default runs a reset query
    (advisory unlocks, CLOSE ALL, UNLISTEN, RESET ALL): one more round trip on every
    release, about a third of a short query's cost. So pooled connections never take
    session state: no session-level advisory locks (only pg_advisory_xact_lock), no
    LISTEN (listeners have connections of their own, from `connect`), no SET (SET LOCAL
    inside a transaction is fine), no temporary tables or cursors kept past a call."""


async def create_pool(url: str, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, init=_init_connection, reset=_keep_session
    )
    assert pool is not None
    return pool
