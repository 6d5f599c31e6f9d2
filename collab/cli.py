"""The `collab` command: serve, migrate, backup, restore, user create, project network and
project delete."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from collab.config import Settings, load_settings
from collab.preflight import DataDirLock, StartupError, bind, check_database, check_url, describe


def _settings(args: argparse.Namespace) -> Settings:
    no_sandbox = getattr(args, "no_sandbox", False)
    return load_settings(
        config_file=args.config,
        data_dir=getattr(args, "data_dir", None),
        database_url=getattr(args, "database_url", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        sandbox="none" if no_sandbox else None,
        sandbox_allow_none=True if no_sandbox else None,
    )


def _announce(settings: Settings) -> Settings:
    """Say which data dir and database the command uses (a command run without the
    server's --data-dir would otherwise quietly make a second database), and refuse a
    database URL that is not PostgreSQL's before anything starts."""
    print(describe(settings), file=sys.stderr)
    if settings.database_url:
        check_url(settings.database_url)
    return settings


async def _resolve(settings: Settings) -> str:
    """The database URL, checked by connecting once, or the embedded cluster's."""
    from collab.app import resolve_database

    if settings.database_url:
        await check_database(settings.database_url)
    return await resolve_database(settings)


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn re-raises SIGTERM after its graceful shutdown, which skips atexit (and so the
        embedded PostgreSQL's clean stop); a shutdown we asked for exits 0 instead."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = {
                sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
            }
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


def serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from collab import logs
    from collab.app import create_app
    from collab.preflight import redact

    settings = _settings(args)
    logs.configure(settings.log_level)
    logging.getLogger("collab.cli").info(
        describe(settings),
        extra={
            "event": "server.config",
            "data_dir": str(settings.data_dir),
            "database": redact(settings.database_url) if settings.database_url else "embedded",
        },
    )
    # Everything that can fail for a reason the user can fix is checked before the
    # database starts, migrations run or anything is written to the data dir.
    if settings.database_url:
        check_url(settings.database_url)
    sock = bind(settings.host, settings.port)
    lock = None
    if settings.database_url:
        asyncio.run(check_database(settings.database_url))
    else:
        # One server per embedded database: a second would share the cluster and take
        # the first one's live kernels and projects for its own.
        lock = DataDirLock(settings.data_dir)
        lock.acquire()
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        # Documents may be large (the sync cap); /ws applies its own smaller limit per frame.
        ws_max_size=64 * 1024 * 1024,
        ws_per_message_deflate=settings.ws_per_message_deflate,
        timeout_graceful_shutdown=10,
        proxy_headers=False,
    )
    server = _server_class()(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        if lock is not None:
            lock.release()
    return 0 if server.started else 1


async def _with_database(settings: Settings) -> str:
    from collab.db import migrate

    url = await _resolve(settings)
    await migrate.migrate(url)
    return url


def migrate_cmd(args: argparse.Namespace) -> int:
    from collab.db import migrate

    settings = _announce(_settings(args))

    async def run() -> list[str]:
        return await migrate.migrate(await _resolve(settings))

    try:
        applied = asyncio.run(run())
    except migrate.MigrationError as err:
        print(f"migration failed: {err}", file=sys.stderr)
        return 1
    print("\n".join(f"applied {name}" for name in applied) or "nothing to apply")
    return 0


def user_create(args: argparse.Namespace) -> int:
    from collab.auth.accounts import create_account
    from collab.db.pool import create_pool
    from collab.errors import ApiError

    settings = _announce(_settings(args))
    password = args.password or getpass.getpass("password: ")

    async def run() -> Any:
        url = await _with_database(settings)
        pool = await create_pool(url, 1, 2)
        try:
            return await create_account(pool, args.email, password, args.name or "", args.admin)
        finally:
            await pool.close()

    try:
        account = asyncio.run(run())
    except ApiError as err:
        print(f"error: {err.message} ({err.code})", file=sys.stderr)
        return 1
    print(
        f"created {'admin ' if account.is_admin else ''}account {account.account_id} <{account.email}>"
    )
    return 0


def project_cmd(args: argparse.Namespace) -> int:
    from uuid import UUID

    from collab.db.pool import create_pool
    from collab.sandbox import admin

    project_id = UUID(args.project_id)
    settings = _settings(args)

    async def run() -> bool:
        pool = await create_pool(await _with_database(settings), 1, 2)
        try:
            if args.project_command == "network":
                return await admin.set_network(pool, project_id, args.state == "on")
            return await admin.delete_project(pool, settings, project_id)
        finally:
            await pool.close()

    if not asyncio.run(run()):
        print(f"error: no project {project_id}", file=sys.stderr)
        return 1
    print(f"project {project_id}: {args.project_command} done")
    return 0


async def _server_major(url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SHOW server_version_num")) // 10000
    finally:
        await conn.close()


def _current_secret(settings: Settings) -> str | None:
    """The signing secret the server uses, without making one (as app.load_secret would)."""
    if settings.secret:
        return settings.secret
    path = settings.data_dir / "secret"
    return path.read_text().strip() if path.exists() else None


def backup_cmd(args: argparse.Namespace) -> int:
    from collab.backup import BackupError, backup

    settings = _announce(_settings(args))

    async def prepare() -> tuple[str, int]:
        url = await _with_database(settings)
        return url, await _server_major(url)

    try:
        url, major = asyncio.run(prepare())
        backup(url, major, settings.projects_dir, Path(args.file), _current_secret(settings))
    except BackupError as err:
        print(f"backup failed: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.file}")
    return 0


def restore_cmd(args: argparse.Namespace) -> int:
    import asyncpg

    from collab.backup import BackupError, forget_transient, restore
    from collab.db import migrate

    settings = _announce(_settings(args))
    if not settings.database_url:
        # Replacing the database under a running server would lose what it writes.
        DataDirLock(settings.data_dir).acquire("restore")

    async def prepare() -> tuple[str, int]:
        url = await _resolve(settings)
        conn = await asyncpg.connect(url)
        try:
            has_accounts = await conn.fetchval("SELECT to_regclass('accounts') IS NOT NULL")
            if (
                has_accounts
                and await conn.fetchval("SELECT count(*) FROM accounts")
                and not args.yes
            ):
                raise BackupError(
                    "the database holds accounts; pass --yes to replace everything in it"
                )
            await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        finally:
            await conn.close()
        return url, await _server_major(url)

    try:
        url, major = asyncio.run(prepare())
        manifest = restore(
            url, major, settings.projects_dir, Path(args.file), settings.data_dir / "secret"
        )
        asyncio.run(forget_transient(url))
        asyncio.run(migrate.migrate(url))
    except (BackupError, OSError) as err:
        print(f"restore failed: {err}", file=sys.stderr)
        return 1
    print(f"restored {args.file}")
    if manifest.get("secret") and settings.secret:
        print(
            "note: the backup's signing secret is in "
            f"{settings.data_dir / 'secret'}, but the `secret` setting overrides it: "
            "sessions from the backup stay valid only if that setting has the same value",
            file=sys.stderr,
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collab", description="Real-time collaborative computing server"
    )
    parser.add_argument("--config", help="a TOML settings file (also COLLAB_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", help="where the embedded database, secret and projects live")
        p.add_argument("--database-url", help="use this PostgreSQL instead of the embedded one")

    p = sub.add_parser("serve", help="run the server")
    common(p)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run project code as the server itself (one trusted user only; logs a warning)",
    )
    p.set_defaults(func=serve)

    p = sub.add_parser("migrate", help="apply pending database migrations")
    common(p)
    p.set_defaults(func=migrate_cmd)

    p = sub.add_parser("backup", help="write the database and project files to one tar file")
    common(p)
    p.add_argument("file")
    p.set_defaults(func=backup_cmd)

    p = sub.add_parser("restore", help="replace the database and project files from a backup")
    common(p)
    p.add_argument("file")
    p.add_argument("--yes", action="store_true", help="replace a database that holds accounts")
    p.set_defaults(func=restore_cmd)

    p = sub.add_parser("user", help="manage accounts")
    user_sub = p.add_subparsers(dest="user_command", required=True)
    c = user_sub.add_parser("create", help="create an account")
    common(c)
    c.add_argument("--email", required=True)
    c.add_argument("--password", help="prompted for when left out")
    c.add_argument("--name")
    c.add_argument("--admin", action="store_true")
    c.set_defaults(func=user_create)

    p = sub.add_parser("project", help="admin operations on projects")
    project_sub = p.add_subparsers(dest="project_command", required=True)
    c = project_sub.add_parser("network", help="allow or forbid a project's network")
    common(c)
    c.add_argument("project_id")
    c.add_argument("state", choices=["on", "off"])
    c.set_defaults(func=project_cmd)
    c = project_sub.add_parser("delete", help="delete a project, its OS user and its files")
    common(c)
    c.add_argument("project_id")
    c.set_defaults(func=project_cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except StartupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
