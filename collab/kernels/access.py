"""Who may touch a project's kernel or terminal, and which file a client path names:
membership through `collab.projects.store.role`, and paths that stay inside the project
directory (no `..`, no absolute paths, no NUL bytes, no symlink leading out)."""

from __future__ import annotations

import asyncio
from pathlib import Path, PurePosixPath
from typing import Any
from uuid import UUID

from collab.errors import ApiError
from collab.projects import store
from collab.sync import paths
from collab.ws.connection import Connection


def project_id_arg(args: dict[str, Any]) -> UUID:
    raw = args.get("project_id")
    if not isinstance(raw, str):
        raise ApiError("bad_args", "`project_id` is a UUID string")
    try:
        return UUID(raw)
    except ValueError:
        raise ApiError("bad_args", "`project_id` is a UUID string") from None


def relative_path(raw: Any, suffix: str) -> str:
    """The normalised project-relative path, or ApiError('bad_path')."""
    if not isinstance(raw, str) or not raw:
        raise ApiError("bad_args", "`path` is a non-empty string")
    try:
        path = PurePosixPath(paths.normalize(raw))
    except paths.BadPath as exc:
        raise ApiError("bad_path", str(exc)) from None
    if path.suffix != suffix:
        raise ApiError("bad_path", f"this call takes a {suffix} path")
    return str(path)


def _inside(root: Path, path: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    full = (root / path).resolve()
    if not full.is_relative_to(root):
        raise ApiError("bad_path", "the path leads outside the project directory")
    return full


async def authorize(
    conn: Connection, args: dict[str, Any], suffix: str, *, write: bool = True
) -> tuple[UUID, str, Path]:
    """Check membership (a writer's role unless `write` is False: viewers only look) and
    the path: (project_id, relative path, project directory)."""
    project_id = project_id_arg(args)
    path = relative_path(args.get("path"), suffix)
    role = await store.role(conn.services.pool, project_id, conn.account.account_id)
    store.check_role(role, write)
    directory = store.project_dir(conn.services.settings.projects_dir, project_id)
    # One trip to a thread: resolving symlinks touches the disk.
    await asyncio.to_thread(_inside, directory, path)
    return project_id, path, directory
