"""LatexBuilds: the builds of every main file this process runs, and their rows in the
`latex_builds` table. Requests that arrive while a build waits to start (the merge
window, or a free build slot) join it, as CoCalc's aggregate does. A request during a
running build joins it too when nothing the build reads has changed since it started
(two collaborators pressing Build together get one build, with no wait before it);
otherwise it cancels the build and queues a new one. `stop` cancels without a new one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from collab.config import Settings
from collab.db.liveness import Liveness
from collab.errors import ApiError
from collab.latex import files, runner
from collab.sandbox.service import Sandbox

log = logging.getLogger(__name__)

Key = tuple[UUID, str]


@dataclass
class _Job:
    build: int
    directory: Path
    requested_by: list[str]
    started: bool = False
    finishing: bool = False  # TeX is done; its result is being written
    # The project's files as the build found them (files.sources), once `read` is set.
    sources: frozenset[Any] | None = None
    read: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class LatexBuilds:
    def __init__(
        self,
        settings: Settings,
        pool: Any,
        sandbox: Sandbox,
        rooms: Callable[[], Any] = lambda: None,
        database_url: str | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.sandbox = sandbox
        self._rooms = rooms
        self._jobs: dict[Key, _Job] = {}
        self._locks: dict[Key, asyncio.Lock] = {}
        self._slots = asyncio.Semaphore(max(1, settings.latex_max_builds))
        self._liveness = Liveness(database_url, "collab-latex-host") if database_url else None
        self.runs = 0  # latexmk runs started by this process

    @property
    def host(self) -> str | None:
        return self._liveness.host if self._liveness is not None else None

    async def start(self) -> None:
        """Builds do not outlive their process: the unfinished rows of ended processes
        are marked failed."""
        if self._liveness is not None:
            await self._liveness.hold()
        async with self.pool.acquire() as conn:
            hosts = await conn.fetch(
                """SELECT DISTINCT host FROM latex_builds
                   WHERE status IN ('queued', 'running') AND host IS DISTINCT FROM $1""",
                self.host,
            )
            for row in hosts:
                host = row["host"]
                if host is not None and (
                    self._liveness is None or not await self._liveness.gone(conn, host)
                ):
                    continue
                await conn.execute(
                    """UPDATE latex_builds SET status = 'failed', finished = now(),
                       message = 'the server stopped during the build'
                       WHERE status IN ('queued', 'running') AND host IS NOT DISTINCT FROM $1""",
                    host,
                )

    async def close(self) -> None:
        for key in list(self._jobs):
            await self.stop(*key)
        if self._liveness is not None:
            await self._liveness.close()

    def get(self, project_id: UUID, path: str) -> int | None:
        """The build number of the main file's build waiting or running, if any."""
        job = self._jobs.get((project_id, path))
        return job.build if job is not None else None

    # -- requests --------------------------------------------------------------------

    async def request(
        self, project_id: UUID, path: str, directory: Path, account_id: UUID
    ) -> dict[str, Any]:
        key = (project_id, path)
        who = str(account_id)
        async with self._locks.setdefault(key, asyncio.Lock()):
            job = self._jobs.get(key)
            if job is not None and not job.started:
                await self._join(key, job, who)
                return {"build": job.build, "status": "queued"}
            if job is not None and await self._unchanged(project_id, job):
                await self._join(key, job, who)
                return {"build": job.build, "status": "running"}
            if job is not None:
                await self._cancel(job)
            build = await self.pool.fetchval(
                """INSERT INTO latex_builds AS b (project_id, path, status, requested_by, host)
                   VALUES ($1, $2, 'queued', $3, $4)
                   ON CONFLICT (project_id, path) DO UPDATE
                   SET build = b.build + 1, status = 'queued', requested_by = $3,
                       host = $4, message = '', requested = now(), started = NULL,
                       finished = NULL, milliseconds = NULL
                   RETURNING build""",
                project_id,
                path,
                [who],
                self.host,
            )
            job = _Job(build, directory, [who])
            self._jobs[key] = job
            job.task = asyncio.create_task(self._run(key, job), name=f"latex-build-{build}")
            return {"build": build, "status": "queued"}

    async def _join(self, key: Key, job: _Job, who: str) -> None:
        if who not in job.requested_by:
            job.requested_by.append(who)
            await self.pool.execute(
                """UPDATE latex_builds SET requested_by = $4
                   WHERE project_id = $1 AND path = $2 AND build = $3""",
                *key,
                job.build,
                job.requested_by,
            )

    async def _unchanged(self, project_id: UUID, job: _Job) -> bool:
        """Whether the running build read the project as it is now (the last edits
        written to their files first, as a build does)."""
        await job.read.wait()
        if job.sources is None or job.task is None or job.task.done():
            return False
        rooms = self._rooms()
        if rooms is not None:
            await rooms.flush_mirrors(project_id)
        return await asyncio.to_thread(files.sources, job.directory) == job.sources

    async def stop(self, project_id: UUID, path: str) -> int | None:
        """Cancel the main file's build; its number, or None when none was under way (or
        it had already finished and is writing its result)."""
        key = (project_id, path)
        async with self._locks.setdefault(key, asyncio.Lock()):
            job = self._jobs.get(key)
            if job is None:
                return None
            finishing = job.finishing
            await self._cancel(job)
            return None if finishing else job.build

    async def _cancel(self, job: _Job) -> None:
        # The task writes its `cancelled` row before this returns, so a new build's
        # `queued` row always comes after it in the changefeed. A build whose TeX has
        # finished is let write its result rather than be reported cancelled.
        if job.task is not None and not job.task.done():
            if not job.finishing:
                job.task.cancel()
            await asyncio.wait([job.task])

    # -- one build -------------------------------------------------------------------

    async def _run(self, key: Key, job: _Job) -> None:
        project_id, path = key
        try:
            await asyncio.sleep(self.settings.latex_merge_ms / 1000)
            async with self._slots:
                job.started = True
                outcome = await self._build(project_id, path, job)
            job.finishing = True
            await self._finish(key, job, outcome)
        except asyncio.CancelledError:
            await self._write_status(key, job, "cancelled", "the build was stopped")
        except Exception:
            log.exception("a LaTeX build failed", extra={"event": "latex.error"})
            await self._write_status(key, job, "failed", "the build failed on the server")
        finally:
            job.read.set()  # whatever ended the build, nobody waits on it any more
            if self._jobs.get(key) is job:
                del self._jobs[key]

    async def _build(self, project_id: UUID, path: str, job: _Job) -> runner.Outcome:
        rooms = self._rooms()
        try:
            if rooms is not None:
                # The last edits reach the file before TeX reads it.
                await rooms.flush_mirrors(project_id)
            job.sources = await asyncio.to_thread(files.sources, job.directory)
        finally:
            job.read.set()
        try:
            jail = await self.sandbox.jail(project_id, job.directory)
        except ApiError as err:
            return runner.Outcome("failed", "", err.message)
        await self.pool.execute(
            """UPDATE latex_builds SET status = 'running', started = now()
               WHERE project_id = $1 AND path = $2 AND build = $3""",
            project_id,
            path,
            job.build,
        )
        self.runs += 1
        self.sandbox.started(project_id)
        try:
            return await runner.build(jail, path, self.settings.latex_timeout_seconds)
        finally:
            self.sandbox.ended(project_id)

    async def _finish(self, key: Key, job: _Job, outcome: runner.Outcome) -> None:
        parsed = outcome.parsed.to_json()
        pdf = files.outputs(key[1], ".pdf") if outcome.status == "succeeded" else None
        await self.pool.execute(
            """UPDATE latex_builds SET status = $4, engine = $5, message = $6, errors = $7,
               warnings = $8, badboxes = $9, pdf = COALESCE($10, pdf), milliseconds = $11,
               finished = now()
               WHERE project_id = $1 AND path = $2 AND build = $3""",
            *key,
            job.build,
            outcome.status,
            outcome.engine,
            outcome.message,
            parsed["errors"],
            parsed["warnings"],
            parsed["badboxes"],
            pdf,
            round(outcome.seconds * 1000),
        )
        log.info(
            "LaTeX build %s",
            outcome.status,
            extra={"event": "latex.built", "path": key[1], "seconds": round(outcome.seconds, 3)},
        )

    async def _write_status(self, key: Key, job: _Job, status: str, message: str) -> None:
        with contextlib.suppress(Exception):
            await self.pool.execute(
                """UPDATE latex_builds SET status = $4, message = $5, finished = now()
                   WHERE project_id = $1 AND path = $2 AND build = $3""",
                *key,
                job.build,
                status,
                message,
            )
