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


async def create_pool(url: str, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, init=_init_connection
    )
    assert pool is not None
    return pool
