"""The migration runner: each file once, concurrent migrators, failures change nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from collab.db import migrate


@pytest.fixture
async def empty_db(db_url: str) -> str:
    """A database with nothing in it (the per-test database arrives migrated)."""
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()
    return db_url


async def _versions(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        return [
            r["version"]
            for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        ]
    finally:
        await conn.close()


async def test_project_migrations_apply_once(empty_db: str) -> None:
    first = await migrate.migrate(empty_db)
    assert first == [m.name for m in migrate.discover()]
    assert await migrate.migrate(empty_db) == []
    assert await _versions(empty_db) == [m.version for m in migrate.discover()]


async def test_concurrent_migrators_apply_each_migration_once(
    empty_db: str, tmp_path: Path
) -> None:
    # A slow migration widens the window in which the two migrators overlap.
    (tmp_path / "0001_slow.sql").write_text(
        "SELECT pg_sleep(0.5);\nCREATE TABLE counted (n integer);\nINSERT INTO counted VALUES (1);\n"
    )
    (tmp_path / "0002_more.sql").write_text("INSERT INTO counted VALUES (2);\n")
    results = await asyncio.gather(*(migrate.migrate(empty_db, tmp_path) for _ in range(4)))
    applied = [name for result in results for name in result]
    assert sorted(applied) == ["0001_slow.sql", "0002_more.sql"]
    conn = await asyncpg.connect(empty_db)
    try:
        assert [r["n"] for r in await conn.fetch("SELECT n FROM counted ORDER BY n")] == [1, 2]
    finally:
        await conn.close()


async def test_failing_migration_changes_nothing_and_names_file_and_statement(
    empty_db: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE kept (id integer);\n")
    (tmp_path / "0002_bad.sql").write_text(
        "CREATE TABLE half_done (id integer);\n"
        "INSERT INTO kept VALUES (1);\n"
        "-- the broken statement\n"
        "INSERT INTO no_such_table VALUES (42);\n"
    )
    with pytest.raises(migrate.MigrationError) as caught:
        await migrate.migrate(empty_db, tmp_path)
    text = str(caught.value)
    assert "0002_bad.sql" in text
    assert "statement 3" in text
    assert "INSERT INTO no_such_table VALUES (42)" in text
    conn = await asyncpg.connect(empty_db)
    try:
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
        assert await conn.fetchval("SELECT count(*) FROM kept") == 0
    finally:
        await conn.close()
    assert await _versions(empty_db) == [1]


async def test_badly_named_migration_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "init.sql").write_text("SELECT 1;")
    with pytest.raises(migrate.MigrationError, match=r"NNNN_name\.sql"):
        migrate.discover(tmp_path)


async def test_duplicate_migration_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(migrate.MigrationError, match="version 1 also used"):
        migrate.discover(tmp_path)


async def test_statement_splitter_keeps_dollar_quoted_bodies_whole() -> None:
    sql = (
        "CREATE FUNCTION f() RETURNS trigger AS $$ BEGIN PERFORM 1; RETURN NEW; END; $$ LANGUAGE plpgsql;\n"
        "-- a comment; with a semicolon\n"
        "SELECT 'a;b';\n"
    )
    statements = migrate._statements(sql)
    assert len(statements) == 2
    assert statements[0].startswith("CREATE FUNCTION") and "RETURN NEW; END; $$" in statements[0]
