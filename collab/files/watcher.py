"""One recursive watcher (inotify through watchfiles) over the whole projects directory:
every change on disk, by an editor, a terminal or a kernel, updates the `files` rows of
its project, so the tree in every browser follows it live."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from uuid import UUID

import asyncpg
import watchfiles

from collab.files import listing

log = logging.getLogger(__name__)


def _split(projects_dir: Path, changed: str) -> tuple[UUID, str] | None:
    try:
        rel = Path(changed).relative_to(projects_dir)
    except ValueError:
        return None
    parts = rel.parts
    if len(parts) < 2:
        return None
    try:
        project_id = UUID(parts[0])
    except ValueError:
        return None
    return project_id, "/".join(parts[1:])


def _real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


async def watch(pool: asyncpg.Pool, projects_dir: Path, stop: asyncio.Event) -> None:
    """Follow `projects_dir` (already resolved) until `stop` is set."""
    async for changes in watchfiles.awatch(
        projects_dir,
        stop_event=stop,
        watch_filter=None,
        debounce=100,
        step=20,
        recursive=True,
        ignore_permission_denied=True,
    ):
        added = {_split(projects_dir, p) for c, p in changes if c == watchfiles.Change.added}
        paths = {_split(projects_dir, p) for _, p in changes}
        # A change inside a folder also touches the folders above it (their mtime); the
        # tree shows files' sizes and times, so only the changed paths are refreshed.
        for item in sorted(p for p in paths if p is not None):
            project_id, path = item
            if not listing.listed(path):
                continue
            try:
                await listing.refresh(pool, project_id, projects_dir / str(project_id), path)
                # A folder that appeared with contents (a move, an unpacked archive) is
                # listed whole: inotify reports only the folder.
                full = projects_dir / str(project_id) / path
                if item in added and await asyncio.to_thread(_real_dir, full):
                    await listing.reconcile(pool, project_id, projects_dir / str(project_id))
            except asyncpg.ForeignKeyViolationError:
                pass  # a project deleted under our feet
            except Exception:
                log.exception("listing refresh failed", extra={"event": "files.watch_error"})
