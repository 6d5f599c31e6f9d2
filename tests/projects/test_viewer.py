"""The `viewer` role: an owner makes a member a viewer; a viewer reads everything live
but every call that changes the project answers `forbidden` (checked on the server, many
at once), and its document updates are dropped at /yjs — never applied, stored or
relayed — including on a connection opened before the member was made a viewer."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import UUID

from tests.conftest import make_user, ws_connect
from tests.projects.conftest import new_project
from tests.sync.yclient import connect, stored_text, until


async def make_viewer(server: Any) -> tuple[Any, Any, UUID]:
    owner, viewer = await make_user(server, name="Owner"), await make_user(server, name="Vi")
    project = await new_project(server, owner, viewer)
    async with ws_connect(server, owner.key) as ws:
        answer = await ws.call(
            "project.set_role",
            {"project_id": str(project), "account_id": viewer.account_id, "role": "viewer"},
        )
    assert answer.get("result") == {"account_id": viewer.account_id, "role": "viewer"}, answer
    return owner, viewer, project


def error_code(answer: dict[str, Any]) -> str | None:
    return (answer.get("error") or {}).get("code")


async def test_only_an_owner_sets_roles_and_never_an_owners(server) -> None:
    owner, viewer, project = await make_viewer(server)
    pid = str(project)
    role = await server.services.pool.fetchval(
        "SELECT role FROM project_users WHERE project_id = $1 AND account_id = $2",
        project,
        UUID(viewer.account_id),
    )
    assert role == "viewer"
    async with ws_connect(server, viewer.key) as ws:
        # A viewer (or any non-owner) cannot change roles, not even its own.
        mine = await ws.call(
            "project.set_role",
            {"project_id": pid, "account_id": viewer.account_id, "role": "collaborator"},
        )
        assert error_code(mine) == "forbidden", mine
    async with ws_connect(server, owner.key) as ws:
        theirs = await ws.call(
            "project.set_role",
            {"project_id": pid, "account_id": owner.account_id, "role": "viewer"},
        )
        assert error_code(theirs) == "not_found", theirs
        bad = await ws.call(
            "project.set_role",
            {"project_id": pid, "account_id": viewer.account_id, "role": "owner"},
        )
        assert error_code(bad) == "bad_args", bad
        back = await ws.call(
            "project.set_role",
            {"project_id": pid, "account_id": viewer.account_id, "role": "collaborator"},
        )
        assert back["result"]["role"] == "collaborator", back


async def test_every_changing_call_is_forbidden_for_a_viewer(server) -> None:
    owner, viewer, project = await make_viewer(server)
    pid = str(project)
    nb = {"project_id": pid, "path": "n.ipynb"}
    term = {"project_id": pid, "path": "t.term"}
    tex = {"project_id": pid, "path": "a.tex"}
    refused = [
        ("kernel.execute", {**nb, "cell_ids": ["c"]}),
        ("kernel.interrupt", nb),
        ("kernel.restart", nb),
        ("kernel.shutdown", nb),
        ("kernel.input", {**nb, "value": "x"}),
        ("terminal.open", term),
        ("terminal.input", {**term, "data": "ls\n"}),
        ("terminal.resize", {**term, "rows": 10, "cols": 10}),
        ("terminal.kill", term),
        ("files.create", {"project_id": pid, "path": "new.py"}),
        ("files.mkdir", {"project_id": pid, "path": "dir"}),
        ("files.move", {"project_id": pid, "path": "a.py", "to": "b.py"}),
        ("files.delete", {"project_id": pid, "path": "a.py"}),
        ("latex.build", tex),
        ("latex.stop", tex),
        ("doc.restore", {"project_id": pid, "path": "a.py", "version": 1}),
    ]
    allowed = [
        ("kernel.status", nb),
        ("files.scan", {"project_id": pid}),
        ("doc.history", {"project_id": pid, "path": "a.py"}),
    ]
    async with ws_connect(server, viewer.key) as ws:
        for name, args in refused:
            answer = await ws.call(name, args)
            assert error_code(answer) == "forbidden", (name, answer)
            assert "viewer" in answer["error"]["message"], (name, answer)
        for name, args in allowed:
            answer = await ws.call(name, args)
            assert "result" in answer, (name, answer)
        # Forty at once: every one refused, none runs anything.
        sends = [
            ws.conn.send(
                json.dumps({"id": 1000 + i, "call": "kernel.execute", "args": refused[0][1]})
            )
            for i in range(40)
        ]
        await asyncio.gather(*sends)
        answers: dict[int, Any] = {}
        while len(answers) < 40:
            msg = await ws.recv(60)
            if isinstance(msg.get("id"), int) and msg["id"] >= 1000:
                answers[msg["id"]] = msg
        assert all(error_code(a) == "forbidden" for a in answers.values()), answers
        # Table writes as a member need a writer: the project's title stays.
        write = await ws.request({"query": {"projects": {"project_id": pid, "title": "mine"}}})
        assert error_code(write) == "forbidden", write
    assert server.services.extra["kernels"].get(project, "n.ipynb") is None
    assert await server.services.pool.fetchval("SELECT count(*) FROM executions") == 0
    assert (
        await server.services.pool.fetchval(
            "SELECT title FROM projects WHERE project_id = $1", project
        )
        == "p"
    )
    files = server.services.settings.projects_dir / pid
    assert not (files / "new.py").exists() and not (files / "dir").exists()
    # The upload route too.
    async with server.client() as http:
        auth = {"Authorization": f"Bearer {viewer.key}"}
        r = await http.put(f"/api/projects/{pid}/upload/up.txt", content=b"x", headers=auth)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
        owner_auth = {"Authorization": f"Bearer {owner.key}"}
        r = await http.put(f"/api/projects/{pid}/upload/up.txt", content=b"y", headers=owner_auth)
        assert r.status_code == 201, r.text
        r = await http.get(f"/api/projects/{pid}/download/up.txt", headers=auth)
        assert r.status_code == 200 and r.content == b"y", r.text
    assert (files / "up.txt").read_bytes() == b"y"


async def test_a_viewers_document_updates_are_never_stored_nor_relayed(server) -> None:
    owner, viewer, project = await make_viewer(server)
    async with (
        connect(server, project, "notes.md", owner.key) as writer,
        connect(server, project, "notes.md", viewer.key) as looker,
        connect(server, project, "notes.md", owner.key) as other,
    ):
        for c in (writer, looker, other):
            await asyncio.wait_for(c.synced.wait(), 20)
        writer.text.insert(0, "hello")
        await writer.wait_acked()
        # The viewer sees changes live...
        await until(lambda: str(looker.text) == "hello", 20)
        # ...but what it types goes nowhere.
        looker.text.insert(0, "VIEWER ")
        writer.text.insert(5, " world")
        await writer.wait_acked()
        await until(lambda: str(other.text) == "hello world", 20)
        await until(lambda: "world" in str(looker.text), 20)
        assert "VIEWER" not in str(other.text) and "VIEWER" not in str(writer.text)
        assert await stored_text(server, project, "notes.md") == "hello world"
        # The viewer's connection is still open and still receives.
        assert not looker.closed.done()
    # A fresh client loads the document without the viewer's text.
    async with connect(server, project, "notes.md", owner.key) as fresh:
        await asyncio.wait_for(fresh.synced.wait(), 20)
        assert str(fresh.text) == "hello world"


async def test_a_member_made_viewer_while_connected_stops_writing_on_that_connection(
    server,
) -> None:
    owner, member = await make_user(server), await make_user(server)
    project = await new_project(server, owner, member)
    revocations = server.services.extra["revocations"]
    async with (
        connect(server, project, "notes.md", member.key) as mine,
        connect(server, project, "notes.md", owner.key) as theirs,
        ws_connect(server, owner.key) as ws,
    ):
        await asyncio.wait_for(mine.synced.wait(), 20)
        await asyncio.wait_for(theirs.synced.wait(), 20)
        mine.text.insert(0, "before.")
        await mine.wait_acked()
        await until(lambda: str(theirs.text) == "before.", 20)
        answer = await ws.call(
            "project.set_role",
            {"project_id": str(project), "account_id": member.account_id, "role": "viewer"},
        )
        assert answer["result"]["role"] == "viewer", answer

        # The change reaches the open connection through the change log.
        def demoted() -> bool:
            watches = revocations._by_project.get(str(project), ())
            return any(w.account_id == member.account_id and w.read_only for w in watches)

        await until(demoted, 30)
        mine.text.insert(len(str(mine.text)), " after")
        theirs.text.insert(0, "owner: ")
        await theirs.wait_acked()
        await until(lambda: str(mine.text).startswith("owner: "), 20)
        assert str(theirs.text) == "owner: before."
        assert await stored_text(server, project, "notes.md") == "owner: before."
