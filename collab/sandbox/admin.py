"""Admin operations on projects' sandboxes, for `collab project network|delete`: the
network switch members cannot set, and deleting a project with its OS user and files."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from collab.config import Settings
from collab.projects.store import project_dir
from collab.sandbox.service import Sandbox
from collab.tables.state import Change

log = logging.getLogger(__name__)


async def set_network(pool: Any, project_id: UUID, allowed: bool) -> bool:
    """Allow or forbid the project's network; the next kernel or shell it starts sees
    the change. False if there is no such project."""
    done = await pool.fetchval(
        "UPDATE projects SET network = $2 WHERE project_id = $1 RETURNING true",
        project_id,
        allowed,
    )
    return bool(done)


async def delete_project(pool: Any, settings: Settings, project_id: UUID) -> bool:
    """Mark the project deleted, then remove its processes, OS user and files here.
    Every running server does the same on hearing of the change (on_deleted)."""
    done = await pool.fetchval(
        "UPDATE projects SET deleted = true, state = 'stopped', action = NULL "
        "WHERE project_id = $1 RETURNING true",
        project_id,
    )
    if not done:
        return False
    sandbox = Sandbox(settings)
    try:
        await sandbox.remove_project(project_id, project_dir(settings.projects_dir, project_id))
    finally:
        await sandbox.close()
    return True


def on_deleted(services: Any, sandbox: Sandbox) -> Callable[[Change], Awaitable[None] | None]:
    """on_change on projects: a project just deleted loses its kernels, shells, OS user
    and files in this server process too."""

    async def removed(project_id: UUID) -> None:
        kernels = services.extra.get("kernels")
        if kernels is not None:
            with contextlib.suppress(Exception):
                await kernels.shutdown_project(project_id)
        terminals = services.extra.get("terminals")
        if terminals is not None:
            terminals.kill_project(project_id)
        directory = project_dir(services.settings.projects_dir, project_id)
        await sandbox.remove_project(project_id, directory)
        log.info("deleted project removed", extra={"event": "sandbox.project_removed"})

    def changed(change: Change) -> Awaitable[None] | None:
        new, old = change.new or {}, change.old or {}
        if new.get("deleted") and not old.get("deleted"):
            return removed(UUID(new["project_id"]))
        return None

    return changed
