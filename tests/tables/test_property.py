"""Property: random users x random queries over seeded data never return or change a row
the rules forbid, and every permitted row is returned.

Hypothesis drives a worker thread with its own event loop (its own websockets and
database connection) while the server runs in the test's loop.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_user, ws_connect
from tests.tables.conftest import add_member, create_project

N_USERS = 4
TITLES = ["alpha", "beta", "'; DROP TABLE projects; --"]


async def _truth(conn: asyncpg.Connection) -> dict[str, Any]:
    projects = {
        str(r["project_id"]): r["title"]
        for r in await conn.fetch("SELECT project_id, title FROM projects")
    }
    members = [
        (str(r["project_id"]), str(r["account_id"]), r["role"])
        for r in await conn.fetch("SELECT project_id, account_id, role FROM project_users")
    ]
    names = {
        str(r["account_id"]): r["name"]
        for r in await conn.fetch("SELECT account_id, name FROM accounts")
    }
    return {"projects": projects, "members": members, "names": names}


def _expected(
    truth: dict[str, Any], me: str, table: str, example: dict[str, Any]
) -> list[dict[str, Any]]:
    mine = {p for p, a, _ in truth["members"] if a == me}
    if table == "projects":
        rows = [{"project_id": p, "title": t} for p, t in truth["projects"].items() if p in mine]
    elif table == "project_users":
        rows = [
            {"project_id": p, "account_id": a, "role": r}
            for p, a, r in truth["members"]
            if p in mine
        ]
    elif table == "collaborators":
        rows = [
            {"project_id": p, "account_id": a, "role": r, "name": truth["names"][a]}
            for p, a, r in truth["members"]
            if p in mine
        ]
    else:
        rows = [{"account_id": me, "name": truth["names"][me]}]
    return [r for r in rows if all(r.get(k) == v for k, v in example.items())]


FIELDS = {
    "projects": ["project_id", "title"],
    "project_users": ["project_id", "account_id", "role"],
    "collaborators": ["project_id", "account_id", "role", "name"],
    "accounts": ["account_id", "name"],
}


async def test_random_users_and_queries_never_cross_the_rules(server):
    users = [await make_user(server, name=f"user{i}") for i in range(N_USERS)]
    ids = [u.account_id for u in users]
    projects: list[str] = []
    for i, u in enumerate(users):
        async with ws_connect(server, u.key) as ws:
            for j in range(2):
                pid = await create_project(ws, TITLES[(i + j) % len(TITLES)])
                projects.append(pid)
                await add_member(ws, pid, ids[(i + j + 1) % N_USERS])
    project_pool = [*projects, str(uuid.uuid4())]
    url = server.services.database_url
    ws_url = server.ws + "/ws"

    def run() -> None:
        loop = asyncio.new_event_loop()
        sockets = [
            loop.run_until_complete(
                websockets.connect(ws_url, additional_headers={"Authorization": f"Bearer {u.key}"})
            )
            for u in users
        ]
        admin = loop.run_until_complete(asyncpg.connect(url))
        counter = iter(range(10**9))

        async def ask(who: int, message: dict[str, Any]) -> dict[str, Any]:
            msg_id = next(counter)
            await sockets[who].send(json.dumps({"id": msg_id, **message}))
            while True:
                answer = json.loads(await asyncio.wait_for(sockets[who].recv(), 10))
                if answer.get("id") == msg_id:
                    return dict(answer)

        values = {
            "project_id": st.sampled_from(project_pool),
            "account_id": st.sampled_from([*ids, str(uuid.uuid4())]),
            "title": st.sampled_from(TITLES),
            "role": st.sampled_from(["owner", "collaborator"]),
            "name": st.sampled_from([f"user{i}" for i in range(N_USERS)]),
        }

        @settings(
            max_examples=120,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(data=st.data())
        def prop(data: Any) -> None:
            who = data.draw(st.integers(0, N_USERS - 1), label="user")
            me = ids[who]
            op = data.draw(
                st.sampled_from(["get", "get", "set_title", "add", "remove"]), label="op"
            )
            truth = loop.run_until_complete(_truth(admin))
            if op == "get":
                table = data.draw(st.sampled_from(sorted(FIELDS)), label="table")
                filters = data.draw(
                    st.lists(st.sampled_from(FIELDS[table]), unique=True, max_size=2)
                )
                example = {f: data.draw(values[f], label=f) for f in filters}
                query = {table: [{**{f: None for f in FIELDS[table]}, **example}]}
                answer = loop.run_until_complete(ask(who, {"query": query}))
                got = answer["result"][table]
                key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
                assert sorted(got, key=key) == sorted(_expected(truth, me, table, example), key=key)
                return
            pid = data.draw(values["project_id"], label="project")
            roles = {(p, a): r for p, a, r in truth["members"]}
            if op == "rename":
                target = data.draw(values["account_id"], label="target")
                name = data.draw(values["name"], label="name")
                allowed = target == me
                message = {"query": {"accounts": {"account_id": target, "name": name}}}
            elif op == "set_title":
                title = data.draw(values["title"], label="title")
                allowed = (pid, me) in roles
                message = {"query": {"projects": {"project_id": pid, "title": title}}}
            else:
                target = data.draw(values["account_id"], label="target")
                is_owner = roles.get((pid, me)) == "owner"
                if op == "add":
                    allowed = is_owner and (pid, target) not in roles and target in ids
                    message = {
                        "query": {"project_users": {"project_id": pid, "account_id": target}}
                    }
                else:
                    allowed = is_owner and roles.get((pid, target)) == "collaborator"
                    message = {
                        "query": {"project_users": {"project_id": pid, "account_id": target}},
                        "options": {"delete": True},
                    }
            answer = loop.run_until_complete(ask(who, message))
            after = loop.run_until_complete(_truth(admin))
            if allowed:
                assert "result" in answer, (op, answer)
            else:
                assert "error" in answer, (op, answer)
                assert answer["error"]["code"] in {"forbidden", "conflict", "not_found"}
                assert after == truth, "a refused write changed data"
            if op == "set_title" and allowed:
                assert after["projects"][pid] == title
            if op == "rename":
                expected_names = dict(truth["names"])
                if allowed:
                    expected_names[me] = name
                assert after["names"] == expected_names
            unchanged = {p: t for p, t in after["projects"].items() if p != pid}
            assert unchanged == {p: t for p, t in truth["projects"].items() if p != pid}

        try:
            prop()
        finally:
            for s in sockets:
                loop.run_until_complete(s.close())
            loop.run_until_complete(admin.close())
            loop.close()

    await asyncio.to_thread(run)
