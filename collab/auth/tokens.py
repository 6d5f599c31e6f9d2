"""Session tokens and API keys: random secrets of which the database keeps only a hash."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
from itsdangerous import BadSignature, Signer

from collab.auth.accounts import Account, get_account
from collab.errors import ApiError

SESSION_COOKIE = "collab_session"
KEY_PREFIX = "ck_"
MAX_KEY_NAME = 200


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Sessions:
    """Sessions stored in Postgres; the cookie is the token signed with the server secret."""

    def __init__(self, pool: asyncpg.Pool, secret: str, max_age: int) -> None:
        self._pool = pool
        self._signer = Signer(secret, salt="collab.session")
        self.max_age = max_age

    async def create(self, account_id: UUID) -> str:
        token = secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + timedelta(seconds=self.max_age)
        await self._pool.execute(
            "INSERT INTO sessions (token_hash, account_id, expires) VALUES ($1, $2, $3)",
            _hash(token),
            account_id,
            expires,
        )
        return self._signer.sign(token).decode()

    def _token(self, cookie: str) -> str | None:
        try:
            return self._signer.unsign(cookie).decode()
        except (BadSignature, UnicodeDecodeError):
            return None

    async def account(self, cookie: str) -> Account | None:
        found = await self.lookup(cookie)
        return found[0] if found else None

    async def lookup(self, cookie: str) -> tuple[Account, UUID, datetime] | None:
        """(account, session_id, expires) of a live session: the id names the session in
        revocations (collab/auth/revocation.py) without its secret."""
        token = self._token(cookie)
        if token is None:
            return None
        row = await self._pool.fetchrow(
            """SELECT account_id, session_id, expires FROM sessions
               WHERE token_hash = $1 AND expires > now()""",
            _hash(token),
        )
        if row is None:
            return None
        account = await get_account(self._pool, row["account_id"])
        return (account, row["session_id"], row["expires"]) if account else None

    async def delete(self, cookie: str) -> None:
        token = self._token(cookie)
        if token is not None:
            await self._pool.execute("DELETE FROM sessions WHERE token_hash = $1", _hash(token))


class ApiKeys:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, account_id: UUID, name: object = "") -> dict[str, Any]:
        if name is None:
            name = ""
        if not isinstance(name, str) or len(name) > MAX_KEY_NAME:
            raise ApiError("bad_name", f"a key name is text of at most {MAX_KEY_NAME} characters")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        row = await self._pool.fetchrow(
            """INSERT INTO api_keys (account_id, key_hash, prefix, name) VALUES ($1, $2, $3, $4)
               RETURNING key_id, created""",
            account_id,
            _hash(key),
            key[:8],
            name,
        )
        return {
            "key": key,
            "key_id": str(row["key_id"]),
            "name": name,
            "created": row["created"].isoformat(),
        }

    async def list(self, account_id: UUID) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT key_id, prefix, name, created, last_used, revoked FROM api_keys
               WHERE account_id = $1 ORDER BY created""",
            account_id,
        )
        return [
            {
                "key_id": str(r["key_id"]),
                "prefix": r["prefix"],
                "name": r["name"],
                "created": r["created"].isoformat(),
                "last_used": r["last_used"].isoformat() if r["last_used"] else None,
                "revoked": r["revoked"].isoformat() if r["revoked"] else None,
            }
            for r in rows
        ]

    async def revoke(self, account_id: UUID, key_id: UUID) -> bool:
        status = await self._pool.execute(
            """UPDATE api_keys SET revoked = now()
               WHERE key_id = $1 AND account_id = $2 AND revoked IS NULL""",
            key_id,
            account_id,
        )
        return status.endswith(" 1")

    async def account(self, key: str) -> Account | None:
        found = await self.lookup(key)
        return found[0] if found else None

    async def lookup(self, key: str) -> tuple[Account, UUID] | None:
        """(account, key_id) of a valid key, marking it used."""
        if not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None
        row = await self._pool.fetchrow(
            """UPDATE api_keys SET last_used = now()
               WHERE key_hash = $1 AND revoked IS NULL RETURNING account_id, key_id""",
            _hash(key),
        )
        if row is None:
            return None
        account = await get_account(self._pool, row["account_id"])
        return (account, row["key_id"]) if account else None
