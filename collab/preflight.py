"""Checks the command line makes before it starts anything: the database URL, the port,
and the data-dir lock of the one server that runs an embedded PostgreSQL. Each failure
is one clear line for a person (StartupError), never a traceback."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from collab.config import Settings

SCHEMES = ("postgresql", "postgres")
LOCK_FILE = "serve.lock"
# How long the command line waits for a database before saying it is unreachable.
CONNECT_TIMEOUT = 10.0
_SECRET_PARAMS = {"password", "passfile", "sslpassword"}


class StartupError(RuntimeError):
    """A reason the command cannot run, worded for the person who typed it."""


def redact(url: str) -> str:
    """The URL without its password (in the authority or as a query parameter)."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostinfo = netloc.rpartition("@")
            netloc = userinfo.partition(":")[0] + "@" + hostinfo
        # Parameters are kept as written (a socket directory stays readable), only the
        # secret ones are left out.
        query = "&".join(
            pair
            for pair in parts.query.split("&")
            if pair and unquote(pair.partition("=")[0]).lower() not in _SECRET_PARAMS
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "(an unparsable URL)"


def check_url(url: str) -> None:
    """A database URL asyncpg can use: postgresql://user@host:port/database."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as err:
        raise StartupError(
            f"the database URL {redact(url)} is not valid ({err}); "
            "give one like postgresql://user:password@host:5432/database"
        ) from None
    if parts.scheme not in SCHEMES:
        raise StartupError(
            f"the database URL {redact(url)} is not a PostgreSQL URL; "
            "give one like postgresql://user:password@host:5432/database "
            "(--database-url or COLLAB_DATABASE_URL)"
        )


async def check_database(url: str) -> None:
    """Connect once, so that an unreachable or refusing server is one clear line."""
    import asyncpg

    try:
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
    except (
        OSError,
        TimeoutError,
        ValueError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    ) as err:
        reason = str(err).strip() or err.__class__.__name__
        raise StartupError(
            f"cannot connect to the database at {redact(url)}: {reason}; check that "
            "PostgreSQL runs there and accepts connections, and the URL's host, port, "
            "user, password and database (--database-url or COLLAB_DATABASE_URL)"
        ) from None
    await conn.close()


def bind(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound before anything else starts."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as err:
        raise StartupError(f"cannot listen on {host}:{port}: {err}; check --host") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # As uvicorn does: a restart does not wait out TIME_WAIT of the last run's sockets.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as err:
        sock.close()
        reason = err.strerror or str(err)
        raise StartupError(
            f"cannot listen on {host}:{port}: {reason}; another program (another collab "
            "server?) may be using that port: stop it, or choose another with --port"
        ) from None
    sock.set_inheritable(False)
    return sock


class DataDirLock:
    """An exclusive flock on data_dir/serve.lock held for the life of the process: one
    server per data dir with an embedded PostgreSQL. The kernel drops it when the process
    dies however it dies, so a kill -9 never leaves a stale lock."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, purpose: str = "start a server") -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f" (pid {holder})" if holder else ""
            raise StartupError(
                f"cannot {purpose}: another collab server{who} is running on the data dir "
                f"{self.path.parent} and its embedded PostgreSQL; stop it first, or give "
                "this one its own --data-dir (servers that share one PostgreSQL use "
                "--database-url)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip())
    return None


def describe(settings: Settings) -> str:
    """Which data dir and database a command uses (never a password)."""
    if settings.database_url:
        database = f"database {redact(settings.database_url)}"
    else:
        database = f"embedded PostgreSQL in {settings.data_dir / 'postgres'}"
    return f"collab: data dir {settings.data_dir}, {database}"
