"""The migration runner: migrations/NNNN_name.sql applied in order, each once, each in a
transaction, under an advisory lock so that concurrent servers never apply one twice."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import sqlparse

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# An arbitrary constant: the advisory lock that serialises migrators on one database.
_LOCK_KEY = 0x636F6C6C6162
_NAME = re.compile(r"^(\d+)_[\w-]+\.sql$")


class MigrationError(RuntimeError):
    """A migration failed; nothing of it was applied."""


@dataclass(frozen=True)
class Migration:
    version: int
    path: Path

    @property
    def name(self) -> str:
        return self.path.name


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"{path.name}: version {version} also used by {found[version].name}"
            )
        found[version] = Migration(version, path)
    return [found[v] for v in sorted(found)]


def _statements(sql: str) -> list[str]:
    out = []
    for stmt in sqlparse.split(sql):
        body = sqlparse.format(stmt, strip_comments=True).strip().rstrip(";").strip()
        if body:
            out.append(stmt.strip())
    return out


async def migrate(url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the names applied by this call."""
    migrations = discover(directory)
    conn = await asyncpg.connect(url)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for migration in migrations:
                if migration.version in done:
                    continue
                await _apply(conn, migration)
                applied_now.append(migration.name)
                log.info("migration applied", extra={"event": "db.migrate", "file": migration.name})
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()
    return applied_now


async def _apply(conn: asyncpg.Connection, migration: Migration) -> None:
    statements = _statements(migration.path.read_text())
    async with conn.transaction():
        for number, statement in enumerate(statements, 1):
            try:
                await conn.execute(statement)
            except asyncpg.PostgresError as err:
                raise MigrationError(
                    f"{migration.name}: statement {number} failed: {err.__class__.__name__}: {err}\n"
                    f"{statement}"
                ) from err
        await conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            migration.version,
            migration.name,
        )
