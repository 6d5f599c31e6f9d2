"""Accounts: creation with validation, and checking an email and password."""

from __future__ import annotations

import re
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from collab.auth.passwords import hash_password, verify_password
from collab.errors import ApiError

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
MAX_NAME = 200
MAX_EMAIL = 320


@dataclass(frozen=True)
class Account:
    account_id: UUID
    email: str
    name: str
    is_admin: bool


def _account(row: asyncpg.Record) -> Account:
    return Account(row["account_id"], row["email"], row["name"], row["is_admin"])


def validate_signup(email: object, password: object, name: object) -> tuple[str, str, str]:
    if not isinstance(email, str) or len(email) > MAX_EMAIL or not _EMAIL.match(email):
        raise ApiError("bad_email", "a valid email address is required")
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise ApiError("weak_password", f"the password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        # Refused, never cut: a cut password would let any longer one with the same start in.
        raise ApiError("password_too_long", f"a password is at most {MAX_PASSWORD} characters")
    if name is None:
        name = ""
    if not isinstance(name, str) or len(name) > MAX_NAME:
        raise ApiError("bad_name", f"the name is text of at most {MAX_NAME} characters")
    return email.strip(), password, name.strip()


async def create_account(
    pool: asyncpg.Pool, email: str, password: str, name: str = "", is_admin: bool = False
) -> Account:
    email, password, name = validate_signup(email, password, name)
    password_hash = await hash_password(password)
    try:
        row = await pool.fetchrow(
            """INSERT INTO accounts (email, name, password_hash, is_admin)
               VALUES ($1, $2, $3, $4)
               RETURNING account_id, email, name, is_admin""",
            email,
            name,
            password_hash,
            is_admin,
        )
    except asyncpg.UniqueViolationError:
        raise ApiError("email_taken", "an account with this email exists", status=409) from None
    return _account(row)


async def check_password(pool: asyncpg.Pool, email: str, password: str) -> Account | None:
    """The account whose password this is, or None. The whole password is checked: an
    over-long one fails as any wrong one does (no account has one), in the same time."""
    row = await pool.fetchrow(
        """SELECT account_id, email, name, is_admin, password_hash
           FROM accounts WHERE lower(email) = lower($1)""",
        email,
    )
    ok = await verify_password(row["password_hash"] if row else None, password)
    return _account(row) if ok and row else None


async def get_account(pool: asyncpg.Pool | asyncpg.Connection, account_id: UUID) -> Account | None:
    row = await pool.fetchrow(
        "SELECT account_id, email, name, is_admin FROM accounts WHERE account_id = $1", account_id
    )
    return _account(row) if row else None
