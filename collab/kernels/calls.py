"""The kernel calls on /ws (kernel.execute, interrupt, restart, shutdown, input, status)
and the component that owns the process's `Kernels` (services.extra["kernels"])."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from collab.errors import ApiError, valid_unicode
from collab.kernels import specs
from collab.kernels.access import authorize, project_id_arg
from collab.kernels.manager import Kernels
from collab.kernels.session import KernelGone, KernelSession
from collab.projects import store
from collab.services import Services
from collab.ws.connection import Connection
from collab.ws.dispatch import Api

MAX_CELLS = 1000
MAX_CELL_ID = 256
MAX_INPUT = 64 * 1024


def _only(args: dict[str, Any], *allowed: str) -> None:
    extra = set(args) - {"project_id", "path", *allowed}
    if extra:
        raise ApiError("bad_args", f"unexpected arguments: {', '.join(sorted(extra))}")


def _kernels(conn: Connection) -> Kernels:
    kernels: Kernels = conn.services.extra["kernels"]
    return kernels


async def _running(conn: Connection, args: dict[str, Any]) -> KernelSession:
    project_id, path, _ = await authorize(conn, args, ".ipynb", write=True)
    session = _kernels(conn).get(project_id, path)
    if session is None:
        raise ApiError("no_kernel", "no kernel is running for this notebook", status=404)
    return session


async def execute(conn: Connection, args: dict[str, Any]) -> Any:
    _only(args, "cell_ids")
    cell_ids = args.get("cell_ids")
    if not isinstance(cell_ids, list) or not cell_ids:
        raise ApiError("bad_args", "`cell_ids` is a non-empty list of cell ids")
    if len(cell_ids) > MAX_CELLS:
        raise ApiError("too_large", f"at most {MAX_CELLS} cells per call")
    if not all(isinstance(c, str) and 0 < len(c) <= MAX_CELL_ID for c in cell_ids):
        raise ApiError("bad_args", f"a cell id is a string of 1 to {MAX_CELL_ID} characters")
    project_id, path, directory = await authorize(conn, args, ".ipynb")
    session = await _kernels(conn).open(project_id, path, directory)
    try:
        queued = session.execute(
            cell_ids,
            {"account_id": conn.account.account_id, "name": conn.account.name},
        )
    except KernelGone:
        raise ApiError("no_kernel", "the kernel is shutting down; try again", 409) from None
    if not queued:
        raise ApiError("no_such_cell", "none of these ids is a code cell of the notebook", 404)
    return {"queued": queued, "status": session.status}


async def interrupt(conn: Connection, args: dict[str, Any]) -> Any:
    _only(args)
    session = await _running(conn, args)
    await session.interrupt()
    return {"status": session.status}


async def restart(conn: Connection, args: dict[str, Any]) -> Any:
    """Restart the notebook's kernel; with `kernel_name`, as that kernelspec (written
    into the notebook's metadata for everyone) — the kernel picker."""
    _only(args, "kernel_name")
    name = args.get("kernel_name")
    if name is not None and (not isinstance(name, str) or not 0 < len(name) <= 256):
        raise ApiError("bad_args", "`kernel_name` is a kernelspec name from kernel.specs")
    project_id, path, directory = await authorize(conn, args, ".ipynb")
    spec = await specs.find(conn.services.settings, name) if name is not None else None
    session = await _kernels(conn).open(project_id, path, directory)
    try:
        await session.restart(spec)
    except ApiError:
        raise
    except Exception:
        raise ApiError("kernel_failed", "the kernel could not be restarted", 500) from None
    return {"status": session.status, "name": session.kernel_name}


async def shutdown(conn: Connection, args: dict[str, Any]) -> Any:
    _only(args)
    project_id, path, _ = await authorize(conn, args, ".ipynb")
    if not await _kernels(conn).shutdown(project_id, path):
        raise ApiError("no_kernel", "no kernel is running for this notebook", status=404)
    return {"status": "stopped"}


async def input_reply(conn: Connection, args: dict[str, Any]) -> Any:
    _only(args, "value")
    value = args.get("value")
    if not isinstance(value, str):
        raise ApiError("bad_args", "`value` is a string")
    if len(value) > MAX_INPUT:
        raise ApiError("too_large", f"an answer is at most {MAX_INPUT} characters")
    if not valid_unicode(value):
        raise ApiError("bad_args", "`value` is valid Unicode text (no lone surrogates)")
    session = await _running(conn, args)
    if not session.input_reply(value):
        raise ApiError("no_input_pending", "the kernel is not waiting for input", 409)
    return {"ok": True}


async def status(conn: Connection, args: dict[str, Any]) -> Any:
    _only(args)
    project_id, path, _ = await authorize(conn, args, ".ipynb", write=False)
    session = _kernels(conn).get(project_id, path)
    if session is None:
        return {"status": "stopped", "queued": []}
    return {"status": session.status, "name": session.kernel_name, "queued": session.queued}


async def kernel_specs(conn: Connection, args: dict[str, Any]) -> Any:
    """kernel.specs {project_id}: the kernelspecs a notebook of the project may use."""
    extra = set(args) - {"project_id"}
    if extra:
        raise ApiError("bad_args", f"unexpected arguments: {', '.join(sorted(extra))}")
    project_id = project_id_arg(args)
    store.check_role(
        await store.role(conn.services.pool, project_id, conn.account.account_id), False
    )
    return await specs.kernelspecs(conn.services.settings)


CALLS = {
    "kernel.execute": execute,
    "kernel.interrupt": interrupt,
    "kernel.restart": restart,
    "kernel.shutdown": shutdown,
    "kernel.input": input_reply,
    "kernel.status": status,
    "kernel.specs": kernel_specs,
}


@contextlib.asynccontextmanager
async def component(services: Services, api: Api) -> AsyncIterator[None]:
    kernels = Kernels(
        services.settings,
        lambda: services.extra.get("rooms"),
        pool=services.pool,
        database_url=services.database_url,
        sandbox=services.extra.get("sandbox"),
    )
    services.extra["kernels"] = kernels
    for name, handler in CALLS.items():
        api.register_call(name, handler)
    await kernels.start()
    try:
        yield
    finally:
        await kernels.close()
