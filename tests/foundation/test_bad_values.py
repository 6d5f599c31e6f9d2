"""Values a server cannot store or use (lone surrogates, times past year 9999 in UTC,
integers past 64 bits, file names past NAME_MAX) get a client error code, never
`internal`, and leave no traceback in the log."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import pytest
import websockets

from collab.projects.store import create_project
from tests.conftest import ws_connect

LONG_SEGMENT = "a" * 300


@pytest.fixture
async def project(server: Any, user: Any) -> UUID:
    services = server.services
    return await create_project(
        services.pool, services.settings.projects_dir, UUID(user.account_id), "p"
    )


def _code(answer: dict[str, Any]) -> str | None:
    return answer.get("error", {}).get("code")


async def test_table_values_that_cannot_be_stored_are_bad_value(server, user, project, faults):
    async with ws_connect(server, user.key) as ws:
        for example in (
            {"title": "\ud800"},
            {"created": "9999-12-31T23:59:59-14:00"},
            {"created": "0001-01-01T00:00:00+14:00"},
            {"disk_used": 2**63},
        ):
            answer = await ws.request({"query": {"projects": [{"project_id": None, **example}]}})
            assert _code(answer) == "bad_value", (example, answer)
        answer = await ws.request(
            {"query": {"projects": {"project_id": str(project), "title": "a\udfffb"}}}
        )
        assert _code(answer) == "bad_value", answer
        answer = await ws.request({"query": {"projects": {"title": "\ud83d"}}})
        assert _code(answer) == "bad_value", answer
        # A surrogate pair is one real character and is fine.
        answer = await ws.request(
            {"query": {"projects": {"project_id": str(project), "title": "\ud83d\ude00"}}}
        )
        assert "result" in answer, answer
    assert faults.summary() == []


async def test_history_calls_refuse_versions_past_64_bits_and_bad_paths(
    server, user, project, faults
):
    async with ws_connect(server, user.key) as ws:
        for call in ("doc.version", "doc.restore"):
            for version in (2**63, 2**64 + 5):
                args = {"project_id": str(project), "path": "a.txt", "version": version}
                answer = await ws.call(call, args)
                assert _code(answer) == "bad_args", (call, version, answer)
        for path in ("\ud800.txt", f"{LONG_SEGMENT}.txt", f"d/{LONG_SEGMENT}/x.txt", "é" * 600):
            answer = await ws.call("doc.history", {"project_id": str(project), "path": path})
            assert _code(answer) == "bad_path", (path, answer)
    assert faults.summary() == []


async def test_kernel_and_terminal_calls_refuse_unusable_paths_with_bad_path(
    server, user, project, faults
):
    async with ws_connect(server, user.key) as ws:
        for name, suffix, extra in (
            ("kernel.execute", ".ipynb", {"cell_ids": ["c1"]}),
            ("kernel.restart", ".ipynb", {}),
            ("kernel.status", ".ipynb", {}),
            ("terminal.open", ".term", {}),
            ("terminal.kill", ".term", {}),
        ):
            for path in (LONG_SEGMENT + suffix, f"sub/{LONG_SEGMENT}{suffix}", "\ud800" + suffix):
                answer = await ws.call(name, {"project_id": str(project), "path": path, **extra})
                assert _code(answer) == "bad_path", (name, path, answer)
        answer = await ws.call(
            "terminal.input", {"project_id": str(project), "path": "t.term", "data": "\udc80"}
        )
        assert _code(answer) == "bad_args", answer
        answer = await ws.call(
            "kernel.input", {"project_id": str(project), "path": "a.ipynb", "value": "\ud800"}
        )
        assert _code(answer) == "bad_args", answer
    assert faults.summary() == []


async def test_document_socket_closes_an_overlong_path_with_4400(server, user, project, faults):
    for path in (f"{LONG_SEGMENT}.txt", f"dir/{LONG_SEGMENT}.md"):
        url = f"{server.ws}/yjs/{project}/{path}?token={user.key}"
        async with websockets.connect(url) as conn:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(conn.recv(), 20)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
    assert faults.summary() == []


async def test_http_bodies_with_lone_surrogates_are_bad_request(server, faults):
    async with server.client() as http:
        for body in (
            '{"email": "a@example.com", "password": "\\ud800\\ud800\\ud800\\ud800xx", "name": "A"}',
            '{"email": "\\udfff@example.com", "password": "long enough pw"}',
            '{"email": "b@example.com", "password": "long enough pw", "name": "\\ud800"}',
        ):
            r = await http.post(
                "/api/auth/signup", content=body, headers={"content-type": "application/json"}
            )
            assert r.status_code == 400, r.text
            assert r.json()["error"]["code"] == "bad_request"
        r = await http.post(
            "/api/auth/signup",
            content="[" * 30000 + "]" * 30000,
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_json", r.text
    assert faults.summary() == []
