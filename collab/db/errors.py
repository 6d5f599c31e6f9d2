"""Which failures mean "the database cannot be reached right now" (stopped, restarting,
out of connections, a connection cut): clients get the retryable `unavailable` (HTTP 503,
close code 1013 on the WebSockets), never `internal`."""

from __future__ import annotations

from types import TracebackType

import asyncpg
from asyncpg import exceptions as pg

from collab.errors import ApiError

CLOSE_TRY_AGAIN = 1013  # RFC 6455 "Try Again Later"

_DOWN = (
    pg.PostgresConnectionError,  # class 08: connection gone, refused, rejected
    pg.CannotConnectNowError,  # 57P03: starting up or shutting down
    pg.AdminShutdownError,
    pg.CrashShutdownError,
    pg.TooManyConnectionsError,
)
_CLOSED = ("connection is closed", "pool is closing", "underlying connection is closed")


def database_unavailable(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) is the database being out of reach."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _DOWN):
            return True
        if isinstance(current, asyncpg.InterfaceError) and any(m in str(current) for m in _CLOSED):
            return True
        # Socket errors and timeouts count only when raised inside asyncpg (connecting,
        # reading a reply): the same types from a file or a kernel are other faults.
        if isinstance(current, OSError | TimeoutError) and _inside_asyncpg(current.__traceback__):
            return True
        current = current.__cause__ or current.__context__
    return False


def _inside_asyncpg(tb: TracebackType | None) -> bool:
    while tb is not None:
        if "/asyncpg/" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def unavailable(outcome_unknown: bool = False) -> ApiError:
    """The answer for a request the database outage stopped. Nothing was done, unless
    `outcome_unknown`: the connection broke while a write was being committed."""
    extra = {"outcome": "unknown"} if outcome_unknown else {}
    return ApiError(
        "unavailable", "the database is not reachable; retry shortly", status=503, **extra
    )
