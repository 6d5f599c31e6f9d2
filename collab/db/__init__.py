"""The database: asyncpg pool, the embedded PostgreSQL default, the migration runner."""
