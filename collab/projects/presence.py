"""Project presence: which members are connected to a project right now.

Every server process counts its own live connections per (project, account): each
/yjs document connection, and each /ws connection that called `presence.join` for the
project page. A single writer task turns those counts into rows of `project_presence`
(one per project, account and process, with the paths open): a row is inserted when the
first connection opens, its paths updated as documents open and close, and deleted when
the last one goes. Members read the table with a changefeed (schema/project_presence.toml).

A process keeps a heartbeat row in `presence_processes`; the rows it owns reference it.
Any process deletes heartbeat rows older than the expiry, and their presence rows go
with them (ON DELETE CASCADE, which the change log records), so a crashed process's
members go offline within `presence_expiry_seconds` without anyone writing per-member
heartbeats. Published as services.extra["presence"].
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID

import asyncpg

from collab.errors import ApiError
from collab.projects.store import role
from collab.services import Services
from collab.ws.connection import Connection
from collab.ws.dispatch import Api

log = logging.getLogger(__name__)

Key = tuple[UUID, UUID]
# The project page itself (a /ws presence.join), not a document: never listed in paths.
PAGE = ""


class Presence:
    def __init__(self, services: Services) -> None:
        self.pool = services.pool
        self.heartbeat = float(services.settings.presence_heartbeat_seconds)
        self.expiry = float(services.settings.presence_expiry_seconds)
        self.process_id = uuid.uuid4()
        self._open: dict[Key, Counter[str]] = {}
        self._dirty: set[Key] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []

    # ---- connections ----

    def enter(self, project_id: UUID, account_id: UUID, path: str = PAGE) -> Callable[[], None]:
        """Count one connection; the returned function (idempotent) counts it out."""
        key = (project_id, account_id)
        self._open.setdefault(key, Counter())[path] += 1
        self._mark(key)
        left = False

        def leave() -> None:
            nonlocal left
            if left:
                return
            left = True
            counts = self._open.get(key)
            if counts is None:
                return
            counts[path] -= 1
            if counts[path] <= 0:
                del counts[path]
            if not counts:
                del self._open[key]
            self._mark(key)

        return leave

    def _mark(self, key: Key) -> None:
        self._dirty.add(key)
        self._idle.clear()
        self._wake.set()

    async def settled(self, timeout: float = 10) -> None:
        """Wait until every count so far is written (tests)."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    # ---- lifecycle ----

    async def start(self) -> None:
        await self._register()
        self._tasks = [
            asyncio.create_task(self._writer()),
            asyncio.create_task(self._heartbeats()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.pool.execute(
                "DELETE FROM presence_processes WHERE process_id = $1", self.process_id
            )

    async def _register(self) -> None:
        await self.pool.execute(
            """INSERT INTO presence_processes (process_id) VALUES ($1)
               ON CONFLICT (process_id) DO UPDATE SET last_seen = now()""",
            self.process_id,
        )

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                found = await self.pool.fetchval(
                    """UPDATE presence_processes SET last_seen = now()
                       WHERE process_id = $1 RETURNING 1""",
                    self.process_id,
                )
                if not found:
                    # Expired by another process (this one was paused or cut off): its
                    # rows are gone; register again and write every count anew.
                    log.warning("presence expired", extra={"event": "presence.expired"})
                    await self._register()
                    for key in self._open:
                        self._mark(key)
                await self.pool.execute(
                    """DELETE FROM presence_processes
                       WHERE last_seen < now() - make_interval(secs => $1)""",
                    self.expiry,
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("presence heartbeat failed", extra={"event": "presence.heartbeat"})

    async def _writer(self) -> None:
        backoff = 0.2
        while True:
            if not self._dirty:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
            key = self._dirty.pop()
            try:
                await self._write(key)
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("presence not written", extra={"event": "presence.write_error"})
                self._dirty.add(key)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _write(self, key: Key) -> None:
        project_id, account_id = key
        counts = self._open.get(key)
        if not counts:
            await self.pool.execute(
                """DELETE FROM project_presence
                   WHERE project_id = $1 AND account_id = $2 AND process_id = $3""",
                project_id,
                account_id,
                self.process_id,
            )
            return
        paths = sorted(p for p in counts if p != PAGE)
        for attempt in range(2):
            try:
                await self.pool.execute(
                    """INSERT INTO project_presence (project_id, account_id, process_id, paths)
                       VALUES ($1, $2, $3, $4::jsonb)
                       ON CONFLICT (project_id, account_id, process_id)
                       DO UPDATE SET paths = EXCLUDED.paths""",
                    project_id,
                    account_id,
                    self.process_id,
                    paths,
                )
                return
            except asyncpg.ForeignKeyViolationError:
                # This process's heartbeat row expired, or the project or account is
                # gone: register again once; a project that is gone is skipped.
                if attempt == 0:
                    await self._register()
        log.info("presence for a missing project", extra={"event": "presence.skipped"})


async def join(conn: Connection, args: dict[str, Any]) -> Any:
    """presence.join {project_id}: this connection counts as online in the project (the
    project page) until it closes, calls presence.leave, or stops being a member."""
    project_id = _project_arg(args)
    account = conn.account
    joined = _joined(conn)
    if project_id in joined:
        return {"joined": str(project_id)}
    presence: Presence = conn.services.extra["presence"]
    revocations = conn.services.extra["revocations"]
    # Watched before membership is checked, as /yjs does: a removal committed after the
    # check reaches this watch.
    watch = revocations.watch(conn.identity, str(project_id))
    try:
        member = await role(conn.services.pool, project_id, account.account_id) is not None
    except BaseException:
        revocations.unwatch(watch)
        raise
    if not member or watch.revoked or project_id in joined:
        revocations.unwatch(watch)
        if not member:
            raise ApiError("forbidden", "no such project, or not a member", status=403)
        return {"joined": str(project_id)}
    leave = presence.enter(project_id, account.account_id)

    def done() -> None:
        leave()
        revocations.unwatch(watch)
        joined.pop(project_id, None)

    joined[project_id] = done
    # Removed from the project: offline there, the connection itself stays open.
    watch.set_closer(lambda _code, _reason: done())
    return {"joined": str(project_id)}


async def leave_call(conn: Connection, args: dict[str, Any]) -> Any:
    """presence.leave {project_id}: the project page closed (the connection stays)."""
    project_id = _project_arg(args)
    done = _joined(conn).get(project_id)
    if done is not None:
        done()
    return {"left": str(project_id)}


_by_conn: dict[Connection, dict[UUID, Callable[[], None]]] = {}


def _joined(conn: Connection) -> dict[UUID, Callable[[], None]]:
    joined = _by_conn.get(conn)
    if joined is None:
        joined = _by_conn[conn] = {}

        def closed() -> None:
            for done in list(joined.values()):
                done()
            _by_conn.pop(conn, None)

        conn.on_close(closed)
    return joined


def _project_arg(args: dict[str, Any]) -> UUID:
    extra = set(args) - {"project_id"}
    if extra:
        raise ApiError("bad_args", f"unexpected arguments: {', '.join(sorted(extra))}")
    raw = args.get("project_id")
    if not isinstance(raw, str) or len(raw) > 64:
        raise ApiError("bad_args", "`project_id` is a UUID string")
    try:
        return UUID(raw)
    except ValueError:
        raise ApiError("bad_args", "`project_id` is a UUID string") from None


@contextlib.asynccontextmanager
async def presence_component(services: Services, api: Api) -> AsyncIterator[None]:
    presence = Presence(services)
    await presence.start()
    services.extra["presence"] = presence
    api.register_call("presence.join", join)
    api.register_call("presence.leave", leave_call)
    try:
        yield
    finally:
        await presence.stop()
