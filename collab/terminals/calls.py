"""The terminal calls on /ws (terminal.open, input, resize, close, kill) and the component
that owns the process's `Terminals` (services.extra["terminals"]). A connection that opened
a terminal receives its output as {"terminal": id, "data": …} frames until it closes it or
disconnects."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from collab.errors import ApiError, valid_unicode
from collab.kernels.access import authorize
from collab.projects import store
from collab.services import Services
from collab.terminals.manager import Terminals
from collab.terminals.pty import Terminal
from collab.ws.connection import Connection
from collab.ws.dispatch import Api

SUFFIX = ".term"
MAX_INPUT = 64 * 1024
MAX_ROWS, MAX_COLS = 1000, 1000

# Which terminals each connection views: closing the connection detaches them all.
_viewing: dict[Connection, set[tuple[UUID, str]]] = {}


def _only(args: dict[str, Any], *allowed: str) -> None:
    extra = set(args) - {"project_id", "path", *allowed}
    if extra:
        raise ApiError("bad_args", f"unexpected arguments: {', '.join(sorted(extra))}")


def _size(args: dict[str, Any]) -> tuple[int, int]:
    rows, cols = args.get("rows", 24), args.get("cols", 80)
    for name, value, top in (("rows", rows, MAX_ROWS), ("cols", cols, MAX_COLS)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise ApiError("bad_args", f"`{name}` is an integer from 1 to {top}")
    return rows, cols


def _terminals(conn: Connection) -> Terminals:
    terminals: Terminals = conn.services.extra["terminals"]
    return terminals


async def _viewed(conn: Connection, args: dict[str, Any]) -> Terminal:
    project_id, path, _ = await authorize(conn, args, SUFFIX, write=True)
    terminal = _terminals(conn).get(project_id, path)
    if terminal is None or not terminal.viewing(conn):
        raise ApiError("not_open", "open the terminal first (terminal.open)", 409)
    return terminal


def _detach_all(conn: Connection) -> None:
    for key in _viewing.pop(conn, set()):
        terminal = _terminals(conn).get(*key)
        if terminal is not None:
            terminal.detach(conn)


def _project_lost(terminals: Terminals, project_id: str, account_id: str | None) -> None:
    """An account (None: everyone) lost the project: its connections stop viewing the
    project's terminals at once, and are told so after their last output frame."""
    for conn, keys in list(_viewing.items()):
        if account_id is not None and str(conn.account.account_id) != account_id:
            continue
        for key in [k for k in keys if str(k[0]) == project_id]:
            keys.discard(key)
            terminal = terminals.get(*key)
            if terminal is None or not terminal.viewing(conn):
                continue
            terminal.detach(conn)
            conn.send(
                {
                    "terminal": terminal.id,
                    "error": {"code": "forbidden", "message": "you lost access to this project"},
                }
            )


async def open_terminal(conn: Connection, args: dict[str, Any]) -> Any:
    _only(args, "rows", "cols")
    rows, cols = _size(args)
    project_id, path, directory = await authorize(conn, args, SUFFIX, write=False)
    role = await store.role(conn.services.pool, project_id, conn.account.account_id)
    if role not in store.WRITERS and _terminals(conn).get(project_id, path) is None:
        # A viewer watches a running shell; starting one is running code.
        raise ApiError("forbidden", "viewers cannot start a terminal", status=403)
    terminal = await _terminals(conn).open(project_id, path, directory)
    if conn not in _viewing:
        _viewing[conn] = set()
        conn.on_close(lambda: _detach_all(conn))
    _viewing[conn].add((project_id, path))

    def sink(frame: str) -> None:
        if not conn.send(frame):
            terminal.detach(conn)

    scrollback = terminal.attach(conn, sink, rows, cols)
    rows, cols = terminal.size
    return {"terminal": terminal.id, "scrollback": scrollback, "rows": rows, "cols": cols}


async def input_terminal(conn: Connection, args: dict[str, Any]) -> Any:
    _only(args, "data")
    data = args.get("data")
    if not isinstance(data, str) or not data:
        raise ApiError("bad_args", "`data` is a non-empty string")
    if len(data) > MAX_INPUT:
        raise ApiError("too_large", f"at most {MAX_INPUT} characters of input per call")
    if not valid_unicode(data):
        raise ApiError("bad_args", "`data` is valid Unicode text (no lone surrogates)")
    terminal = await _viewed(conn, args)
    terminal.write(data)
    return {"ok": True}


async def resize_terminal(conn: Connection, args: dict[str, Any]) -> Any:
    _only(args, "rows", "cols")
    rows, cols = _size(args)
    terminal = await _viewed(conn, args)
    terminal.resize(conn, rows, cols)
    rows, cols = terminal.size
    return {"rows": rows, "cols": cols}


async def close_terminal(conn: Connection, args: dict[str, Any]) -> Any:
    _only(args)
    project_id, path, _ = await authorize(conn, args, SUFFIX, write=False)
    terminal = _terminals(conn).get(project_id, path)
    if terminal is None or not terminal.viewing(conn):
        raise ApiError("not_open", "this connection does not view that terminal", 409)
    terminal.detach(conn)
    _viewing.get(conn, set()).discard((project_id, path))
    return {"ok": True}


async def kill_terminal(conn: Connection, args: dict[str, Any]) -> Any:
    _only(args)
    project_id, path, _ = await authorize(conn, args, SUFFIX)
    if not _terminals(conn).kill(project_id, path):
        raise ApiError("no_terminal", "no terminal is running at this path", 404)
    return {"ok": True}


CALLS = {
    "terminal.open": open_terminal,
    "terminal.input": input_terminal,
    "terminal.resize": resize_terminal,
    "terminal.close": close_terminal,
    "terminal.kill": kill_terminal,
}


@contextlib.asynccontextmanager
async def component(services: Services, api: Api) -> AsyncIterator[None]:
    terminals = Terminals(
        services.settings,
        lambda: services.extra.get("rooms"),
        sandbox=services.extra.get("sandbox"),
    )
    services.extra["terminals"] = terminals
    revocations = services.extra.get("revocations")
    if revocations is not None:
        revocations.on_project_lost(lambda p, a: _project_lost(terminals, p, a))
    for name, handler in CALLS.items():
        api.register_call(name, handler)
    terminals.start()
    try:
        yield
    finally:
        await terminals.close()
