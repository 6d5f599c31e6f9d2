"""Who is asking: an HTTP request or WebSocket resolved to an account, by API key
(`Authorization: Bearer …` or `?token=…`) or by session cookie with an Origin check."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from starlette.requests import HTTPConnection

from collab.auth.accounts import Account
from collab.auth.tokens import SESSION_COOKIE, ApiKeys, Sessions
from collab.config import Settings


@dataclass(frozen=True)
class Identity:
    account: Account
    via: Literal["cookie", "key"]
    # What it rests on, named without its secret ("session:<session_id>" or
    # "key:<key_id>"): a connection is closed when this is revoked.
    credential: str = ""
    # When a session ends by itself; None for keys, which do not expire.
    expires: datetime | None = None


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
        key = await keys.lookup(token)
        if key is None:
            return None, "invalid API key"
        return Identity(key[0], "key", f"key:{key[1]}"), None
    cookie = conn.cookies.get(SESSION_COOKIE)
    if cookie:
        session = await sessions.lookup(cookie)
        if session is None:
            return None, "session expired or invalid"
        account, session_id, expires = session
        return Identity(account, "cookie", f"session:{session_id}", expires), None
    return None, "not signed in"
