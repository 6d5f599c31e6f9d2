"""The file calls on /ws (files.scan, files.create, files.mkdir, files.move, files.delete)
and the component that runs the listings watcher."""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

from collab.errors import ApiError
from collab.files import fsops, listing, watcher
from collab.files.paths import checked, inside, project_root
from collab.kernels.access import project_id_arg
from collab.projects import store
from collab.services import Services
from collab.ws.connection import Connection
from collab.ws.dispatch import Api


def _only(args: dict[str, Any], *allowed: str) -> None:
    extra = set(args) - {"project_id", *allowed}
    if extra:
        raise ApiError("bad_args", f"unexpected arguments: {', '.join(sorted(extra))}")


async def member_root(
    conn: Connection, args: dict[str, Any], *, write: bool = True
) -> tuple[UUID, Path]:
    """A member's project root; a writer's (not a viewer's) unless `write` is False."""
    project_id = project_id_arg(args)
    role = await store.role(conn.services.pool, project_id, conn.account.account_id)
    store.check_role(role, write)
    root = await asyncio.to_thread(project_root, conn.services.settings.projects_dir, project_id)
    return project_id, root


def _os_error(err: OSError) -> ApiError:
    if err.errno == errno.EEXIST or isinstance(err, FileExistsError):
        return ApiError("exists", "a file or folder with that name exists", status=409)
    if err.errno == errno.ENOENT:
        return ApiError("not_found", "no such file or folder", status=404)
    if err.errno == errno.ENOTEMPTY:
        return ApiError("exists", "the target is a folder that is not empty", status=409)
    if err.errno in (errno.ENOTDIR, errno.EISDIR):
        return ApiError("bad_path", "a file is in the way of that path")
    return ApiError("file_error", "the file operation failed", status=500)


async def files_scan(conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
    _only(args)
    project_id, root = await member_root(conn, args, write=False)
    count = await listing.reconcile(conn.services.pool, project_id, root)
    return {"entries": count}


async def files_create(conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
    _only(args, "path")
    project_id, root = await member_root(conn, args)
    path = checked(args.get("path"))

    try:
        await asyncio.to_thread(lambda: fsops.create(root, inside(root, path, follow=False)))
    except OSError as err:
        raise _os_error(err) from None
    await _refresh_chain(conn, project_id, root, path)
    return {"path": path}


async def files_mkdir(conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
    _only(args, "path")
    project_id, root = await member_root(conn, args)
    path = checked(args.get("path"))
    try:
        await asyncio.to_thread(lambda: fsops.mkdir(root, inside(root, path, follow=False)))
    except OSError as err:
        raise _os_error(err) from None
    await _refresh_chain(conn, project_id, root, path)
    return {"path": path}


async def files_move(conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
    _only(args, "path", "to")
    project_id, root = await member_root(conn, args)
    path = checked(args.get("path"))
    to = checked(args.get("to"), "to")
    if to == path or to.startswith(path + "/"):
        raise ApiError("bad_path", "a folder cannot move into itself")

    def move() -> None:
        fsops.move(root, inside(root, path, follow=False), inside(root, to, follow=False))

    try:
        async with _documents(conn, project_id, path, to):
            await asyncio.to_thread(move)
    except OSError as err:
        raise _os_error(err) from None
    await listing.refresh(conn.services.pool, project_id, root, path)
    await listing.reconcile(conn.services.pool, project_id, root)
    return {"path": to}


async def files_delete(conn: Connection, args: dict[str, Any]) -> dict[str, Any]:
    _only(args, "path")
    project_id, root = await member_root(conn, args)
    path = checked(args.get("path"))

    try:
        async with _documents(conn, project_id, path, None):
            await asyncio.to_thread(lambda: fsops.delete(root, inside(root, path, follow=False)))
    except OSError as err:
        raise _os_error(err) from None
    await listing.refresh(conn.services.pool, project_id, root, path)
    return {"deleted": path}


def _documents(
    conn: Connection, project_id: UUID, path: str, to: str | None
) -> contextlib.AbstractAsyncContextManager[None]:
    """Open documents follow a move and close on a delete (collab/sync); the file
    operation runs inside, so no mirror write can put the old file back."""
    rooms = conn.services.extra.get("rooms")
    if rooms is None:
        return contextlib.nullcontext()
    relocating: contextlib.AbstractAsyncContextManager[None] = rooms.relocating(
        project_id, path, to
    )
    return relocating


async def _refresh_chain(conn: Connection, project_id: UUID, root: Path, path: str) -> None:
    """The new path and any folders made on the way to it."""
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        await listing.refresh(conn.services.pool, project_id, root, "/".join(parts[:i]))


CALLS = {
    "files.scan": files_scan,
    "files.create": files_create,
    "files.mkdir": files_mkdir,
    "files.move": files_move,
    "files.delete": files_delete,
}


@contextlib.asynccontextmanager
async def component(services: Services, api: Api) -> AsyncIterator[None]:
    for name, handler in CALLS.items():
        api.register_call(name, handler)
    stop = asyncio.Event()
    projects_dir = services.settings.projects_dir
    await asyncio.to_thread(projects_dir.mkdir, parents=True, exist_ok=True)
    resolved = await asyncio.to_thread(projects_dir.resolve)
    task = asyncio.create_task(watcher.watch(services.pool, resolved, stop))
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, 5)
