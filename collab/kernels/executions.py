"""The execution log: one `executions` row per run of a notebook cell (migration 0012,
schema/executions.toml). Sessions report each run as it is queued, starts and ends;
one task writes the reports in order, so a row's changes reach the changefeed in the
order they happened. The newest `keep` rows of each notebook are kept."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

log = logging.getLogger(__name__)

# The source recorded for a run is cut at this many characters.
MAX_SOURCE = 100_000
MAX_ERROR = 1000

Item = tuple[str, tuple[Any, ...]]


class ExecutionLog:
    def __init__(self, pool: Any, keep: int, host: Callable[[], str | None]) -> None:
        self._pool = pool
        self._keep = max(1, keep)
        self._host = host
        self._queue: asyncio.Queue[Item | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._write(), name="kernel-executions")

    async def close(self) -> None:
        if self._task is not None:
            self._queue.put_nowait(None)  # written after everything queued before it
            await self._task
            self._task = None

    async def drained(self) -> None:
        """Wait until every report queued so far is written (for tests and shutdown)."""
        done = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(("barrier", (done,)))
        await done

    # -- reports from sessions ---------------------------------------------------------

    def report(self, project_id: UUID, path: str, kind: str, execution_id: str, **f: Any) -> None:
        if kind == "queued":
            args: tuple[Any, ...] = (
                UUID(execution_id),
                project_id,
                path,
                f["cell_id"],
                f.get("account_id"),
                str(f.get("name") or ""),
            )
        elif kind == "started":
            args = (
                UUID(execution_id),
                f["session"],
                f["kernel_name"],
                str(f["source"])[:MAX_SOURCE],
            )
        else:
            args = (
                UUID(execution_id),
                f["status"],
                f.get("execution_count"),
                str(f.get("error") or "")[:MAX_ERROR],
            )
        self._queue.put_nowait((kind, args))

    # -- the writer --------------------------------------------------------------------

    async def _write(self) -> None:
        while (item := await self._queue.get()) is not None:
            kind, args = item
            if kind == "barrier":
                args[0].set_result(None)
                continue
            try:
                await self._apply(kind, args)
            except Exception:
                log.exception("recording an execution failed")

    async def _apply(self, kind: str, args: tuple[Any, ...]) -> None:
        if kind == "queued":
            # One statement: the row, and the notebook bounded to its newest `keep` runs.
            # The DELETE sees the rows before this INSERT (one snapshot), so it keeps the
            # newest keep - 1 of them, and the new row makes `keep`.
            await self._pool.execute(
                """WITH added AS (
                       INSERT INTO executions (execution_id, project_id, path, cell_id,
                                               account_id, name, status, host)
                       VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7)
                   )
                   DELETE FROM executions WHERE project_id = $2 AND path = $3
                   AND seq <= (SELECT seq FROM executions
                               WHERE project_id = $2 AND path = $3
                               ORDER BY seq DESC OFFSET $8 - 1 LIMIT 1)""",
                *args,
                self._host(),
                self._keep,
            )
        elif kind == "started":
            await self._pool.execute(
                """UPDATE executions SET status = 'running', session = $2, kernel_name = $3,
                   source = $4, started = now() WHERE execution_id = $1""",
                *args,
            )
        else:
            await self._pool.execute(
                """UPDATE executions SET status = $2, execution_count = $3, error = $4,
                   finished = now() WHERE execution_id = $1""",
                *args,
            )
