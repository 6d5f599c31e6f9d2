"""Sign-in rate limits per account and per client address, counted in Postgres so that
every server process sees the same attempts.

An attempt is counted *before* its password is checked, under advisory locks on the
account and the address, so that simultaneous attempts are counted one after another:
however many arrive at once, at most the limit of them reach the password check."""

from __future__ import annotations

import contextlib

import asyncpg

from collab.config import Settings
from collab.errors import ApiError

# Advisory lock namespaces (the first key of the two-key form); the second key is a hash
# of the email or the address. Locks are always taken account first, then address, so
# two attempts never wait on each other in a cycle.
_ACCOUNT_LOCK = 0x6C6F6731
_ADDRESS_LOCK = 0x6C6F6732


class LoginLimiter:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._window = settings.login_window_seconds
        self._per_account = settings.login_max_failures_per_account
        self._per_address = settings.login_max_failures_per_address

    async def attempt(self, email: str, address: str) -> None:
        """Count one sign-in attempt as a failure until `succeeded` clears it, or raise
        `rate_limited` (counting nothing) when the account or address is at its limit."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """SELECT pg_advisory_xact_lock($1, hashtext(lower($3))),
                          pg_advisory_xact_lock($2, hashtext($4))""",
                _ACCOUNT_LOCK,
                _ADDRESS_LOCK,
                email,
                address,
            )
            # The window is measured on the clock, not the transaction start: a waiter
            # must see the attempts committed while it waited for the lock.
            row = await conn.fetchrow(
                """SELECT
                     count(*) FILTER (WHERE lower(email) = lower($1)) AS by_account,
                     count(*) FILTER (WHERE address = $2) AS by_address
                   FROM login_failures
                   WHERE at > clock_timestamp() - make_interval(secs => $3)
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
            await conn.execute(
                "INSERT INTO login_failures (email, address, at) VALUES ($1, $2, clock_timestamp())",
                email,
                address,
            )
        # Housekeeping outside the locks; two cleanups racing over the same rows may
        # deadlock, and either one finishing is enough.
        with contextlib.suppress(asyncpg.DeadlockDetectedError):
            await self._pool.execute(
                "DELETE FROM login_failures WHERE at < clock_timestamp() - make_interval(secs => $1)",
                float(self._window),
            )

    async def succeeded(self, email: str) -> None:
        """The right password: the account's counted attempts, this one included, go."""
        await self._pool.execute("DELETE FROM login_failures WHERE lower(email) = lower($1)", email)
