"""The LaTeX calls on /ws (latex.build, stop, forward, inverse) and the component that
owns the process's `LatexBuilds` (services.extra["latex"]) and serves the PDF route."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

from collab.errors import ApiError
from collab.kernels.access import authorize
from collab.latex import files, mainfile, synctex
from collab.latex.builds import LatexBuilds
from collab.sandbox.service import Sandbox
from collab.services import Services
from collab.sync import paths
from collab.ws.connection import Connection
from collab.ws.dispatch import Api

SUFFIX = ".tex"
MAX_LINE = 10_000_000
MAX_PAGE = 1_000_000
MAX_COORDINATE = 1_000_000.0


def _only(args: dict[str, Any], *allowed: str) -> None:
    extra = set(args) - {"project_id", "path", *allowed}
    if extra:
        raise ApiError("bad_args", f"unexpected arguments: {', '.join(sorted(extra))}")


def _builds(conn: Connection) -> LatexBuilds:
    builds: LatexBuilds = conn.services.extra["latex"]
    return builds


def _integer(
    args: dict[str, Any], name: str, low: int, high: int, default: int | None = None
) -> int:
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError("bad_args", f"`{name}` is an integer from {low} to {high}")
    return value


def _number(args: dict[str, Any], name: str) -> float:
    value = args.get(name)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= MAX_COORDINATE
    ):
        raise ApiError("bad_args", f"`{name}` is a number from 0 to {MAX_COORDINATE:g}")
    return float(value)


async def build(conn: Connection, args: dict[str, Any]) -> Any:
    _only(args)
    project_id, path, directory = await authorize(conn, args, SUFFIX)
    main = await asyncio.to_thread(mainfile.find, directory, path)
    answer = await _builds(conn).request(project_id, main, directory, conn.account.account_id)
    return {"path": main, **answer}


async def stop(conn: Connection, args: dict[str, Any]) -> Any:
    _only(args)
    project_id, path, _ = await authorize(conn, args, SUFFIX)
    number = await _builds(conn).stop(project_id, path)
    if number is None:
        raise ApiError("no_build", "no build of this file is under way", 404)
    return {"build": number, "status": "cancelled"}


async def forward(conn: Connection, args: dict[str, Any]) -> Any:
    _only(args, "source", "line", "column")
    line = _integer(args, "line", 1, MAX_LINE)
    column = _integer(args, "column", 0, MAX_LINE, default=0)
    project_id, path, directory = await authorize(conn, args, SUFFIX, write=False)
    source = path
    if "source" in args:
        raw = args["source"]
        if not isinstance(raw, str):
            raise ApiError("bad_args", "`source` is a project path")
        try:
            source = paths.normalize(raw)
        except paths.BadPath as exc:
            raise ApiError("bad_path", str(exc)) from None
    return await _synctex(
        conn, project_id, path, directory, synctex.forward, path, source, line, column
    )


async def inverse(conn: Connection, args: dict[str, Any]) -> Any:
    _only(args, "page", "x", "y")
    page = _integer(args, "page", 1, MAX_PAGE)
    x, y = _number(args, "x"), _number(args, "y")
    project_id, path, directory = await authorize(conn, args, SUFFIX, write=False)
    return await _synctex(conn, project_id, path, directory, synctex.inverse, path, page, x, y)


async def _synctex(
    conn: Connection, project_id: UUID, path: str, directory: Path, search: Any, *args: Any
) -> Any:
    present = await asyncio.to_thread(files.exists, directory, files.outputs(path, ".synctex.gz"))
    if not present:
        raise ApiError("no_pdf", "build the file first: there is no PDF with SyncTeX data", 404)
    sandbox: Sandbox = _builds(conn).sandbox
    jail = await sandbox.jail(project_id, directory)
    sandbox.started(project_id)
    try:
        return await search(jail, *args)
    finally:
        sandbox.ended(project_id)


CALLS = {
    "latex.build": build,
    "latex.stop": stop,
    "latex.forward": forward,
    "latex.inverse": inverse,
}


@contextlib.asynccontextmanager
async def latex_component(services: Services, api: Api) -> AsyncIterator[None]:
    """Starts after the sandbox and the document rooms, which it takes from
    services.extra; stops (cancelling its builds) before them."""
    sandbox = services.extra.get("sandbox") or Sandbox(services.settings, services.pool)
    builds = LatexBuilds(
        services.settings,
        services.pool,
        sandbox,
        lambda: services.extra.get("rooms"),
        services.database_url,
    )
    services.extra["latex"] = builds
    for name, handler in CALLS.items():
        api.register_call(name, handler)
    await builds.start()
    try:
        yield
    finally:
        await builds.close()
