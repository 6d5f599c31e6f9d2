"""Who is asking: an HTTP request or WebSocket resolved to an account, by API key
(`Authorization: Bearer …` or `?token=…`) or by session cookie with an Origin check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from starlette.requests import HTTPConnection

from collab.auth.accounts import Account
from collab.auth.tokens import SESSION_COOKIE, ApiKeys, Sessions
from collab.config import Settings


@dataclass(frozen=True)
class Identity:
    account: Account
    via: Literal["cookie", "key"]


def bearer_token(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return conn.query_params.get("token") or None


def origin_allowed(conn: HTTPConnection, settings: Settings) -> bool:
    """Cookie-authenticated browsers may only talk to us from our own pages (or allowed ones)."""
    origin = conn.headers.get("origin")
    if origin is None:
        # Browsers always send Origin on WebSockets and on cross-site POSTs; a missing one
        # is a non-browser client, which cannot be the victim of a forged request.
        return True
    if origin in settings.allowed_origins:
        return True
    host = conn.headers.get("host", "")
    scheme = "https" if conn.url.scheme in ("https", "wss") else "http"
    return origin == f"{scheme}://{host}"


async def identify(
    conn: HTTPConnection, sessions: Sessions, keys: ApiKeys
) -> tuple[Identity | None, str | None]:
    """Return (identity, None) or (None, reason). A bad key is never retried as a cookie."""
    token = bearer_token(conn)
    if token is not None:
        account = await keys.account(token)
        return (Identity(account, "key"), None) if account else (None, "invalid API key")
    cookie = conn.cookies.get(SESSION_COOKIE)
    if cookie:
        account = await sessions.account(cookie)
        return (
            (Identity(account, "cookie"), None) if account else (None, "session expired or invalid")
        )
    return None, "not signed in"
