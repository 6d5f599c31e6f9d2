"""Project lifecycle driven by the `projects` table: a member sets `action`, one server
process claims it, acts and publishes `state` (starting → running → stopping → stopped)
through the changefeed. Idle projects stop, disk quotas are checked, and projects left
live by a server process that ended are marked stopped (docs/architecture.md)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg

from collab.errors import ApiError
from collab.kernels.access import project_id_arg
from collab.projects import store
from collab.services import Services
from collab.tables.query import SetRequest
from collab.tables.state import Change
from collab.ws.connection import Connection
from collab.ws.dispatch import Api

log = logging.getLogger(__name__)

ACTIONS = ("start", "stop", "restart")
LIVE = ("starting", "running", "stopping")
ORPHANED = "the server process that ran this project ended"
FAILED = "the server failed to change the project's state"
# Calls that need a running project: they start a stopped one first (as CoCalc does).
STARTING_CALLS = ("kernel.execute", "kernel.restart", "terminal.open")
# How long a call waits for a start another process is carrying out.
START_WAIT = 30.0
# disk_used is rewritten only when it moved this much, so that members' feeds are not
# flooded with size updates.
DISK_STEP = 1024 * 1024


def host_key(host: str) -> int:
    """The advisory lock key a process holds while it lives (signed 64-bit)."""
    digest = hashlib.sha256(b"collab-project-host:" + host.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def disk_usage(root: Path) -> int:
    """Bytes allocated under root (like `du`), symlinks not followed."""
    total, stack = 0, [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                total += st.st_blocks * 512
            except OSError:
                continue
    return total


def _next_state(action: str, state: str) -> str:
    if state == "running" and action in ("stop", "restart"):
        return "stopping"
    if state == "stopped" and action in ("start", "restart"):
        return "starting"
    return state


class Lifecycle:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.pool = services.pool
        # This process's id in projects.host; it holds an advisory lock on host_key(host)
        # on its own connection for as long as it lives.
        self.host = uuid.uuid4().hex
        self._holder: asyncpg.Connection | None = None
        self._locks: dict[UUID, asyncio.Lock] = {}
        # Projects this process is moving right now: it shuts their kernels down itself.
        self._acting: set[UUID] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._checker: asyncio.Task[None] | None = None
        self._closing = False

    # -- start and stop --------------------------------------------------------------

    async def start(self) -> None:
        await self._hold()
        tables = self.services.extra["tables"]
        tables.before_commit("projects", self.validate)
        tables.on_change("projects", self._changed)
        await self.reconcile()
        await self.pending()
        self._checker = asyncio.create_task(self._check_loop(), name="project-lifecycle")

    async def close(self) -> None:
        self._closing = True
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        # Kernels and terminals end with this process: say so rather than leave the
        # projects "running" with nothing behind them.
        for project_id in await self.pool.fetch(
            "SELECT project_id FROM projects WHERE state <> 'stopped' AND host = $1", self.host
        ):
            await self._stop_now(project_id[0], "")
        if self._holder is not None:
            await self._holder.close()

    async def _hold(self) -> None:
        holder = await asyncpg.connect(self.services.database_url)
        await holder.execute("SELECT pg_advisory_lock($1)", host_key(self.host))
        self._holder = holder

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("project lifecycle task failed", exc_info=task.exception())

    # -- the table interface -----------------------------------------------------------

    async def validate(self, conn: asyncpg.Connection, request: SetRequest) -> None:
        """before_commit on projects: `action` is one of ACTIONS, on a live project."""
        if "action" not in request.values:
            return
        action = request.values["action"]
        if action not in ACTIONS:
            raise ApiError("bad_value", "projects.action: one of start, stop, restart")
        project_id = request.key["project_id"]
        if await conn.fetchval("SELECT deleted FROM projects WHERE project_id = $1", project_id):
            raise ApiError("forbidden", "no such row, or you may not change it")
        if request.op == "insert":
            # Creating a project does not write extra fields itself: "create and start".
            await conn.execute(
                "UPDATE projects SET action = $2 WHERE project_id = $1", project_id, action
            )

    def _changed(self, change: Change) -> None:
        """on_change on projects, in every process: act on requests, and shut down this
        process's kernels and terminals of a project another process is stopping."""
        new = change.new
        if not new or self._closing:
            return
        project_id = UUID(new["project_id"])
        if new.get("action"):
            self._spawn(self.act(project_id))
        old_state = (change.old or {}).get("state")
        stopping = new.get("state") in ("stopping", "stopped")
        if stopping and old_state in ("starting", "running") and project_id not in self._acting:
            self._spawn(self._shutdown_local(project_id))

    # -- acting on requests ------------------------------------------------------------

    def _lock(self, project_id: UUID) -> asyncio.Lock:
        # Kept for the process's life (a few hundred bytes per project acted on): dropping
        # a lock while a waiter is being handed it would let two actors run at once.
        return self._locks.setdefault(project_id, asyncio.Lock())

    async def act(self, project_id: UUID) -> None:
        """Carry out the project's pending actions, if this process claims them."""
        async with self._lock(project_id):
            while (claimed := await self._claim(project_id)) is not None:
                action, state = claimed
                self._acting.add(project_id)
                try:
                    if state == "running" and action in ("stop", "restart"):
                        await self._stop(project_id, "")
                    if action == "restart" or (state == "stopped" and action == "start"):
                        if action == "restart" and state == "running":
                            await self._set(project_id, "stopped", "starting", "")
                        await self._start(project_id)
                except Exception:
                    log.exception("a project transition failed", extra={"event": "project.failed"})
                    await self._fail(project_id)
                finally:
                    self._acting.discard(project_id)

    async def _claim(self, project_id: UUID) -> tuple[str, str] | None:
        """Take the pending action and make the first transition in one transaction; a
        project in the middle of a transition keeps its action until that ends."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """SELECT action, state FROM projects
                   WHERE project_id = $1 AND action IS NOT NULL
                     AND state IN ('running', 'stopped') AND NOT deleted
                   FOR UPDATE""",
                project_id,
            )
            if row is None:
                return None
            action, state = row["action"], row["state"]
            if action not in ACTIONS:  # written by hand in SQL; never by a client
                await conn.execute(
                    "UPDATE projects SET action = NULL WHERE project_id = $1", project_id
                )
                return None
            after = _next_state(action, state)
            if after == state:
                await conn.execute(
                    "UPDATE projects SET action = NULL WHERE project_id = $1", project_id
                )
            else:
                await conn.execute(
                    """UPDATE projects SET action = NULL, state = $2, state_changed = now(),
                       state_error = '', host = $3 WHERE project_id = $1""",
                    project_id,
                    after,
                    self.host,
                )
            return action, state

    async def _set(
        self, project_id: UUID, before: str, after: str, error: str, **extra: Any
    ) -> bool:
        """One published transition, only from the state this process expects."""
        sets = ["state = $3", "state_changed = now()", "state_error = $4"]
        args: list[Any] = [project_id, before, after, error]
        host = None if after == "stopped" else self.host
        args.append(host)
        sets.append(f"host = ${len(args)}")
        for name, value in extra.items():  # names come from this module only
            args.append(value)
            sets.append(f"{name} = ${len(args)}")
        return bool(
            await self.pool.fetchval(
                f"UPDATE projects SET {', '.join(sets)} "
                "WHERE project_id = $1 AND state = $2 RETURNING 1",
                *args,
            )
        )

    async def _start(self, project_id: UUID) -> None:
        directory = store.project_dir(self.settings.projects_dir, project_id)
        try:
            await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
            used = await asyncio.to_thread(disk_usage, directory)
        except OSError:
            log.exception("starting a project failed", extra={"event": "project.start_failed"})
            await self._set(project_id, "starting", "stopped", "the project directory is unusable")
            return
        quota = self.settings.project_disk_quota_bytes
        if used > quota:
            await self._set(
                project_id, "starting", "stopped", _over_quota(used, quota), disk_used=used
            )
            return
        await self._set(project_id, "starting", "running", "", disk_used=used, last_active=_now())
        log.info("project started", extra={"event": "project.started"})

    async def _stop(self, project_id: UUID, error: str) -> None:
        """From stopping: end this process's kernels and terminals, then stopped."""
        try:
            await self._shutdown_local(project_id)
        finally:
            await self._set(project_id, "stopping", "stopped", error)
        log.info("project stopped", extra={"event": "project.stopped"})

    async def _fail(self, project_id: UUID) -> None:
        """A transition broke half way: never leave the project starting or stopping."""
        with contextlib.suppress(Exception):
            await self._shutdown_local(project_id)
        for state in LIVE:
            with contextlib.suppress(Exception):
                await self._set(project_id, state, "stopped", FAILED)

    async def _stop_now(self, project_id: UUID, error: str) -> None:
        """Stop a project this process runs (idle, shutting down), whatever its state."""
        async with self._lock(project_id):
            self._acting.add(project_id)
            try:
                for state in LIVE:
                    if await self._set(project_id, state, "stopping", ""):
                        await self._stop(project_id, error)
                        return
            finally:
                self._acting.discard(project_id)

    async def _shutdown_local(self, project_id: UUID) -> None:
        kernels = self.services.extra.get("kernels")
        if kernels is not None:
            await kernels.shutdown_project(project_id)
        terminals = self.services.extra.get("terminals")
        if terminals is not None:
            for path in await self._terminal_paths(project_id):
                terminals.kill(project_id, path)

    async def _terminal_paths(self, project_id: UUID) -> list[str]:
        # Every terminal holds its .term document open, so its path is a document row.
        rows = await self.pool.fetch(
            "SELECT path FROM yjs_documents WHERE project_id = $1 AND path LIKE '%.term'",
            project_id,
        )
        return [r["path"] for r in rows]

    async def pending(self) -> None:
        """Act on requests nobody has taken (a request made while no process listened)."""
        rows = await self.pool.fetch(
            """SELECT project_id FROM projects
               WHERE action IS NOT NULL AND state IN ('running', 'stopped')"""
        )
        for row in rows:
            self._spawn(self.act(row["project_id"]))

    # -- calls that need a running project ----------------------------------------------

    def guard_calls(self, api: Api) -> None:
        for name in STARTING_CALLS:
            if name in api.calls:
                api.before_call(name, self._before_call)

    async def _before_call(self, conn: Connection, args: dict[str, Any]) -> None:
        try:
            project_id = project_id_arg(args)
        except ApiError:
            return  # the call itself answers with its own error
        # One round trip in the common case: a member's call in a running project.
        row = await self.pool.fetchrow(
            """SELECT p.state, p.disk_used FROM projects p JOIN project_users pu USING (project_id)
               WHERE p.project_id = $1 AND pu.account_id = $2 AND NOT p.deleted""",
            project_id,
            conn.account.account_id,
        )
        if row is None:
            return  # the call refuses non-members; they never start a project
        quota = self.settings.project_disk_quota_bytes
        if row["state"] == "running" and row["disk_used"] <= quota:
            return
        await self.ensure_running(project_id)

    async def ensure_running(self, project_id: UUID) -> None:
        """Start the project if it is stopped; ApiError if it cannot run."""
        await self.pool.execute(
            """UPDATE projects SET action = 'start'
               WHERE project_id = $1 AND state <> 'running' AND action IS NULL""",
            project_id,
        )
        await self.act(project_id)
        deadline = time.monotonic() + START_WAIT
        while True:
            row = await self.pool.fetchrow(
                "SELECT state, state_error, disk_used FROM projects WHERE project_id = $1",
                project_id,
            )
            quota = self.settings.project_disk_quota_bytes
            if row["disk_used"] > quota:
                raise ApiError("over_quota", _over_quota(row["disk_used"], quota), 507)
            if row["state"] == "running":
                return
            if row["state"] == "stopped" and not await self.pool.fetchval(
                "SELECT action IS NOT NULL FROM projects WHERE project_id = $1", project_id
            ):
                raise ApiError(
                    "project_stopped", row["state_error"] or "the project could not start", 409
                )
            if time.monotonic() > deadline:
                raise ApiError("project_starting", "the project is still starting; retry", 409)
            await asyncio.sleep(0.1)
            await self.act(project_id)

    # -- periodic checks ---------------------------------------------------------------

    async def _check_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.project_check_seconds)
            try:
                await self.check()
            except Exception:
                log.exception("project lifecycle check failed")

    async def check(self) -> None:
        """Keep the liveness lock, reconcile orphans, retry pending requests, and check
        this process's running projects for idleness and disk use."""
        if self._holder is None or self._holder.is_closed():
            await self._hold()
        await self.reconcile()
        await self.pending()
        # A transition of ours that nobody is carrying out any more (its task failed
        # before it could record so) is finished as a stop.
        stuck = await self.pool.fetch(
            """SELECT project_id FROM projects
               WHERE state IN ('starting', 'stopping') AND host = $1""",
            self.host,
        )
        for row in stuck:
            if not self._lock(row["project_id"]).locked():
                await self._stop_now(row["project_id"], FAILED)
        rows = await self.pool.fetch(
            """SELECT project_id, last_active, disk_used, state_error FROM projects
               WHERE state = 'running' AND host = $1""",
            self.host,
        )
        for row in rows:
            await self._check_project(row)

    async def _check_project(self, row: asyncpg.Record) -> None:
        project_id = row["project_id"]
        directory = store.project_dir(self.settings.projects_dir, project_id)
        used = await asyncio.to_thread(disk_usage, directory)
        quota = self.settings.project_disk_quota_bytes
        error = _over_quota(used, quota) if used > quota else ""
        if error != row["state_error"] or abs(used - row["disk_used"]) >= DISK_STEP:
            await self.pool.execute(
                """UPDATE projects SET disk_used = $2, state_error = $3
                   WHERE project_id = $1 AND state = 'running'""",
                project_id,
                used,
                error,
            )
        last = await self._last_activity(project_id, row["last_active"].timestamp())
        idle = self.settings.project_idle_seconds
        if time.time() - last > idle:
            log.info("stopping idle project", extra={"event": "project.idle"})
            await self._stop_now(project_id, "")
        elif last > row["last_active"].timestamp() + min(60, idle / 2):
            # Written at most about once a minute per project: cheap, and enough to
            # tell idle from active at the idle setting's resolution.
            await self.pool.execute(
                "UPDATE projects SET last_active = to_timestamp($2) WHERE project_id = $1",
                project_id,
                last,
            )

    async def _last_activity(self, project_id: UUID, recorded: float) -> float:
        """The latest document edit, execution or terminal input (wall clock seconds)."""
        latest = recorded
        edited = await self.pool.fetchval(
            """SELECT max(u.last_at) FROM yjs_updates u JOIN yjs_documents d USING (doc_id)
               WHERE d.project_id = $1""",
            project_id,
        )
        if edited is not None:
            latest = max(latest, edited.timestamp())
        offset = time.time() - time.monotonic()
        kernels = self.services.extra.get("kernels")
        if kernels is not None:
            for pid, _, session in kernels.sessions():
                if pid == project_id:
                    if session.busy:
                        return time.time()
                    latest = max(latest, session.last_activity + offset)
        terminals = self.services.extra.get("terminals")
        if terminals is not None:
            for path in await self._terminal_paths(project_id):
                terminal = terminals.get(project_id, path)
                if terminal is not None and terminal.alive:
                    latest = max(latest, terminal.last_activity + offset)
        return latest

    # -- reconciling after a process ended ------------------------------------------------

    async def reconcile(self) -> int:
        """Mark stopped the live projects of processes that no longer hold their lock."""
        hosts = await self.pool.fetch(
            """SELECT DISTINCT host FROM projects
               WHERE state <> 'stopped' AND host IS DISTINCT FROM $1""",
            self.host,
        )
        count = 0
        for row in hosts:
            host = row["host"]
            if host is not None and not await self._host_gone(host):
                continue
            result = await self.pool.execute(
                """UPDATE projects SET state = 'stopped', state_changed = now(),
                   state_error = $2, host = NULL
                   WHERE state <> 'stopped' AND host IS NOT DISTINCT FROM $1""",
                host,
                ORPHANED,
            )
            count += int(result.split()[-1])
        if count:
            log.info("reconciled orphaned projects", extra={"event": "project.reconciled"})
        return count

    async def _host_gone(self, host: str) -> bool:
        assert self._holder is not None
        key = host_key(host)
        if await self._holder.fetchval("SELECT pg_try_advisory_lock($1)", key):
            await self._holder.execute("SELECT pg_advisory_unlock($1)", key)
            return True
        return False


def _over_quota(used: int, quota: int) -> str:
    return f"disk quota exceeded: {used} of {quota} bytes used"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@contextlib.asynccontextmanager
async def lifecycle_component(services: Services, api: Api) -> AsyncIterator[None]:
    lifecycle = Lifecycle(services)
    services.extra["lifecycle"] = lifecycle
    await lifecycle.start()
    lifecycle.guard_calls(api)
    try:
        yield
    finally:
        await lifecycle.close()
