"""Test fixtures: a real PostgreSQL (COLLAB_TEST_DATABASE_URL, or an embedded server
started for the session), a fresh database per test cloned from a migrated template,
and the real app served by uvicorn on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
import websockets

from collab.app import create_app
from collab.config import Settings
from collab.db import embedded, migrate

_counter = itertools.count()


@pytest.fixture(scope="session", autouse=True)
def _project_users() -> Iterator[None]:
    """Projects' OS users that sandboxed tests made in this process (as root) are removed
    at the end; those of other test runs or servers on the machine are left alone."""
    from collab.sandbox import users

    yield
    if os.geteuid() == 0:
        for name in sorted(users.made):
            with contextlib.suppress(Exception):
                subprocess.run(["userdel", name], capture_output=True, check=False)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a maintenance database on a server where tests may create databases."""
    url = os.environ.get("COLLAB_TEST_DATABASE_URL")
    if url:
        yield url
        return
    root = Path(tempfile.mkdtemp(prefix="collab-test-pg-"))
    yield embedded.start(root / "pgdata", delete_on_exit=True)


async def _admin(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(url)


@pytest.fixture(scope="session")
def template_db(pg_url: str) -> Iterator[str]:
    name = f"collab_tmpl_{os.getpid()}"

    async def setup() -> None:
        conn = await _admin(pg_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        await migrate.migrate(embedded.with_database(pg_url, name))

    async def teardown() -> None:
        conn = await _admin(pg_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(setup())
    yield name
    asyncio.run(teardown())


@pytest.fixture
async def db_url(pg_url: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    name = f"collab_test_{os.getpid()}_{next(_counter)}"
    conn = await _admin(pg_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    finally:
        await conn.close()
    yield embedded.with_database(pg_url, name)
    conn = await _admin(pg_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=db_url, secret="test-secret")


@dataclass
class Served:
    app: Any
    host: str
    port: int

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def services(self) -> Any:
        return self.app.state.services

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.http, timeout=30, **kwargs)


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[Served]:
    """Run the real app under uvicorn on a free port inside the test's event loop."""
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_config=None,
        lifespan="on",
        ws_max_size=64 * 1024 * 1024,
        ws_per_message_deflate=settings.ws_per_message_deflate,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server exited during startup")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Served(app, "127.0.0.1", port)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[Served]:
    async with serve(settings) as served:
        yield served


@dataclass
class User:
    account_id: str
    email: str
    password: str
    cookie: str
    key: str


async def make_user(served: Served, email: str | None = None, name: str = "Test User") -> User:
    email = email or f"user{next(_counter)}@example.com"
    password = "correct horse battery"
    async with served.client() as client:
        r = await client.post(
            "/api/auth/signup", json={"email": email, "password": password, "name": name}
        )
        assert r.status_code == 201, r.text
        cookie = r.cookies["collab_session"]
        r2 = await client.post("/api/auth/keys", json={"name": "tests"})
        assert r2.status_code == 201, r2.text
    return User(r.json()["account_id"], email, password, cookie, r2.json()["key"])


@pytest.fixture
async def user(server: Served) -> User:
    return await make_user(server)


class WsClient:
    """A /ws client that matches answers to requests by id and keeps feed events aside."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._ids = itertools.count(1)

    async def send_raw(self, data: str | bytes) -> None:
        await self.conn.send(data)

    async def recv(self, timeout: float = 10) -> Any:
        return json.loads(await asyncio.wait_for(self.conn.recv(), timeout))

    async def request(self, message: dict[str, Any], timeout: float = 10) -> Any:
        msg_id = next(self._ids)
        await self.conn.send(json.dumps({"id": msg_id, **message}))
        while True:
            answer = await self.recv(timeout)
            if answer.get("id") == msg_id:
                return answer

    async def call(self, name: str, args: dict[str, Any] | None = None) -> Any:
        return await self.request({"call": name, "args": args or {}})

    async def close(self) -> None:
        await self.conn.close()


@contextlib.asynccontextmanager
async def ws_connect(
    served: Served, key: str | None = None, **kwargs: Any
) -> AsyncIterator[WsClient]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    headers.update(kwargs.pop("headers", {}))
    async with websockets.connect(
        served.ws + "/ws", additional_headers=headers, max_size=None, **kwargs
    ) as conn:
        yield WsClient(conn)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that touch the database are `integration` tests: .ci/run runs them a second
    time against an external PostgreSQL."""
    for item in items:
        if "db_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
        if "tests/browser/" in item.nodeid:
            item.add_marker(pytest.mark.browser)
