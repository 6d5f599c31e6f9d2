"""Kernels: the per-process registry of kernel sessions, one per (project, notebook path).
A session holds its notebook's room open while it lives, so outputs land in the document
even when every browser has gone; idle sessions are culled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

from collab.config import Settings
from collab.db.liveness import Liveness
from collab.errors import ApiError
from collab.kernels.backend import Backend, LocalBackend
from collab.kernels.executions import ExecutionLog
from collab.kernels.session import KernelSession
from collab.sandbox.service import Sandbox

log = logging.getLogger(__name__)

Key = tuple[UUID, str]


async def open_room(rooms: Any, project_id: UUID, path: str) -> Any:
    """Open a document room; a document that cannot be one (not a notebook, over the size
    cap, a path the rooms refuse) is the client's error. The rooms raise ValueError
    subclasses for those."""
    try:
        return await rooms.open(project_id, path)
    except ValueError as exc:
        raise ApiError("bad_document", str(exc)[:200] or "the document cannot be opened") from None


class Kernels:
    def __init__(
        self,
        settings: Settings,
        rooms: Callable[[], Any],
        make_backend: Callable[[str, Path], Backend] | None = None,
        pool: Any = None,
        database_url: str | None = None,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.settings = settings
        # Every local kernel runs in its project's sandbox; one is made if none is given.
        self._own_sandbox = sandbox is None
        self.sandbox = sandbox or Sandbox(settings, pool)
        self._rooms = rooms
        # The `kernels` table (migrations/0004, schema/kernels.toml): status changes are
        # written in order by one task, and its changefeed tells every member.
        self._pool = pool
        # Rows carry this process's id (`host`), held live by an advisory lock, so that
        # servers sharing the database mark stopped only the kernels of ended processes.
        self._liveness = Liveness(database_url, "collab-kernel-host") if database_url else None
        self._statuses: asyncio.Queue[tuple[UUID, str, str, str] | None] = asyncio.Queue()
        self._status_writer: asyncio.Task[None] | None = None
        # Who ran what (the `executions` table, migration 0012).
        self.executions = (
            ExecutionLog(pool, settings.kernel_executions_kept, lambda: self.host)
            if pool is not None
            else None
        )
        self._make_backend = make_backend
        self._sessions: dict[Key, tuple[KernelSession, Any]] = {}
        # Shutdowns under way: a second caller waits for the first instead of finding
        # nothing to do and reporting the kernel gone while it is still stopping.
        self._closing: dict[Key, asyncio.Future[None]] = {}
        # Per project: opening one notebook's room (a database load) does not hold up
        # other projects, and the per-project kernel count stays exact.
        self._locks: dict[UUID, asyncio.Lock] = {}
        self._culler: asyncio.Task[None] | None = None

    def _backend(self, project_id: UUID, kernel_name: str, cwd: Path) -> Backend:
        if self._make_backend is not None:
            return self._make_backend(kernel_name, cwd)
        s = self.settings
        if s.kernel_gateway_url:
            from collab.kernels.gateway import GatewayBackend

            return GatewayBackend(s.kernel_gateway_url, kernel_name, s.kernel_gateway_token)
        sandbox = self.sandbox

        async def jail() -> Any:
            made = await sandbox.jail(project_id, cwd)
            sandbox.started(project_id)
            return made

        return LocalBackend(
            kernel_name,
            cwd,
            s.kernel_memory_limit,
            jail=jail,
            on_exit=lambda: sandbox.ended(project_id),
            oom_kills=lambda: sandbox.oom_kills(project_id),
        )

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self._pool is not None:
            # Kernels do not outlive their process: rows that ended processes left live
            # are stale; those of processes still running are not ours to touch.
            await self.reconcile()
            self._status_writer = asyncio.create_task(self._write_statuses(), name="kernel-status")
        if self.executions is not None:
            self.executions.start()
        self._culler = asyncio.create_task(self._cull_loop(), name="kernel-culler")

    async def close(self) -> None:
        if self._culler is not None:
            self._culler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._culler
        for key in list(self._sessions):
            await self.shutdown(*key)
        if self._status_writer is not None:
            self._statuses.put_nowait(None)  # written after every status queued before it
            await self._status_writer
        if self.executions is not None:
            await self.executions.close()
        if self._liveness is not None:
            await self._liveness.close()
        if self._own_sandbox:
            await self.sandbox.close()

    @property
    def host(self) -> str | None:
        return self._liveness.host if self._liveness is not None else None

    def _status_changed(self, project_id: UUID, path: str, session: KernelSession) -> None:
        if self._pool is not None:
            self._statuses.put_nowait((project_id, path, session.status, session.kernel_name))

    async def reconcile(self) -> int:
        """Mark stopped the live rows of processes that ended (and rows no process owns);
        return how many."""
        if self._pool is None:
            return 0
        if self._liveness is not None and await self._liveness.hold():
            # (Re)taken: while it was lost another process may have taken our kernels
            # for dead and marked them stopped; say again what they are.
            for project_id, path, session in self.sessions():
                self._status_changed(project_id, path, session)
        count = 0
        async with self._pool.acquire() as conn:
            hosts = await conn.fetch(
                """SELECT DISTINCT host FROM kernels
                   WHERE status <> 'stopped' AND host IS DISTINCT FROM $1""",
                self.host,
            )
            for row in hosts:
                host = row["host"]
                if host is not None and (
                    self._liveness is None or not await self._liveness.gone(conn, host)
                ):
                    continue
                result = await conn.execute(
                    """UPDATE kernels SET status = 'stopped', updated = now()
                       WHERE status <> 'stopped' AND host IS NOT DISTINCT FROM $1""",
                    host,
                )
                count += int(result.split()[-1])
                # Their runs ended with them.
                await conn.execute(
                    """UPDATE executions SET status = 'aborted', finished = now(),
                       error = 'the server stopped'
                       WHERE status IN ('queued', 'running') AND host IS NOT DISTINCT FROM $1""",
                    host,
                )
        if count:
            log.info("reconciled kernels of ended processes", extra={"event": "kernel.reconciled"})
        return count

    async def _write_statuses(self) -> None:
        while (item := await self._statuses.get()) is not None:
            try:
                await self._pool.execute(
                    """INSERT INTO kernels (project_id, path, status, kernel_name, host)
                       VALUES ($1, $2, $3, $4, $5)
                       ON CONFLICT (project_id, path) DO UPDATE
                       SET status = $3, kernel_name = $4, host = $5, updated = now()""",
                    *item,
                    self.host,
                )
            except Exception:
                log.exception("recording a kernel status failed")

    # -- sessions --------------------------------------------------------------------

    def get(self, project_id: UUID, path: str) -> KernelSession | None:
        entry = self._sessions.get((project_id, path))
        return entry[0] if entry else None

    def sessions(self) -> list[tuple[UUID, str, KernelSession]]:
        return [(p, path, s) for (p, path), (s, _) in self._sessions.items()]

    async def open(self, project_id: UUID, path: str, directory: Path) -> KernelSession:
        """The session for this notebook, created (kernel not yet started) if needed."""
        entry = self._sessions.get((project_id, path))
        if entry is not None:
            return entry[0]
        lock = self._locks.setdefault(project_id, asyncio.Lock())
        async with lock:
            entry = self._sessions.get((project_id, path))
            if entry is not None:
                return entry[0]
            if sum(1 for p, _ in self._sessions if p == project_id) >= (
                self.settings.kernels_per_project
            ):
                raise ApiError(
                    "too_many_kernels",
                    f"a project runs at most {self.settings.kernels_per_project} kernels",
                )
            rooms = self._rooms()
            if rooms is None:
                raise ApiError("unavailable", "documents are not served by this server", 503)
            room = await open_room(rooms, project_id, path)
            if getattr(room, "kind", "notebook") != "notebook":
                await rooms.close(room)
                raise ApiError("bad_path", "kernels run notebooks (.ipynb)")
            s = self.settings
            session = KernelSession(
                room.doc,
                lambda name: self._backend(project_id, name, directory),
                default_kernel=s.kernel_default_name,
                max_output_bytes=s.kernel_max_output_bytes,
                max_outputs=s.kernel_max_outputs,
                flush_interval=s.kernel_flush_ms / 1000,
                on_status=lambda session: self._status_changed(project_id, path, session),
                on_execution=self._execution_reporter(project_id, path),
            )
            session.start()
            self._sessions[(project_id, path)] = (session, room)
            return session

    def _execution_reporter(self, project_id: UUID, path: str) -> Callable[..., None] | None:
        executions = self.executions
        if executions is None:
            return None

        def report(kind: str, execution_id: str, **fields: Any) -> None:
            executions.report(project_id, path, kind, execution_id, **fields)

        return report

    async def shutdown(self, project_id: UUID, path: str) -> bool:
        key = (project_id, path)
        closing = self._closing.get(key)
        if closing is not None:
            await asyncio.shield(closing)
            return True
        entry = self._sessions.pop(key, None)
        if entry is None:
            return False
        task = asyncio.ensure_future(self._close(*entry))
        self._closing[key] = task
        task.add_done_callback(lambda _: self._closing.pop(key, None))
        await asyncio.shield(task)
        return True

    async def shutdown_project(self, project_id: UUID) -> None:
        """Shut down every kernel of a project, including shutdowns already under way."""
        keys = {k for k in self._sessions if k[0] == project_id}
        keys |= {k for k in self._closing if k[0] == project_id}
        for key in keys:
            await self.shutdown(*key)

    async def _close(self, session: KernelSession, room: Any) -> None:
        try:
            await session.shutdown()
        finally:
            rooms = self._rooms()
            if rooms is not None:
                await rooms.close(room)

    # -- culling ---------------------------------------------------------------------

    async def cull(self) -> list[Key]:
        """Shut down sessions idle longer than the setting; a busy kernel is never culled."""
        now = time.monotonic()
        limit = self.settings.kernel_idle_seconds
        idle = [
            key
            for key, (session, _) in self._sessions.items()
            if not session.busy and now - session.last_activity > limit
        ]
        for key in idle:
            log.info("culling idle kernel", extra={"event": "kernel.culled", "path": key[1]})
            await self.shutdown(*key)
        return idle

    async def _cull_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.kernel_cull_interval)
            try:
                await self.cull()
                await self.reconcile()
            except Exception:
                log.exception("culling kernels failed")
