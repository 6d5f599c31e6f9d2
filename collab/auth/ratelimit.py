"""Sign-in rate limits per account and per client address, counted in Postgres so that
every server process sees the same failures."""

from __future__ import annotations

import asyncpg

from collab.config import Settings
from collab.errors import ApiError


class LoginLimiter:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._window = settings.login_window_seconds
        self._per_account = settings.login_max_failures_per_account
        self._per_address = settings.login_max_failures_per_address

    async def check(self, email: str, address: str) -> None:
        row = await self._pool.fetchrow(
            """SELECT
                 count(*) FILTER (WHERE lower(email) = lower($1)) AS by_account,
                 count(*) FILTER (WHERE address = $2) AS by_address
               FROM login_failures
               WHERE at > now() - make_interval(secs => $3)
                 AND (lower(email) = lower($1) OR address = $2)""",
            email,
            address,
            float(self._window),
        )
        if row["by_account"] >= self._per_account or row["by_address"] >= self._per_address:
            raise ApiError(
                "rate_limited",
                "too many failed sign-ins; try again later",
                status=429,
                retry_after=self._window,
            )

    async def failed(self, email: str, address: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO login_failures (email, address) VALUES ($1, $2)", email, address
            )
            await conn.execute(
                "DELETE FROM login_failures WHERE at < now() - make_interval(secs => $1)",
                float(self._window),
            )

    async def succeeded(self, email: str) -> None:
        await self._pool.execute("DELETE FROM login_failures WHERE lower(email) = lower($1)", email)
