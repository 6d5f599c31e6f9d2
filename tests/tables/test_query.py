"""get / set / delete over /ws: semantics, rules, bad input, injection."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from collab.tables import schema as schema_mod
from tests.conftest import make_user, ws_connect
from tests.tables.conftest import add_member, create_project, remove_member


def code(answer: dict) -> str:
    assert "error" in answer, answer
    return str(answer["error"]["code"])


async def test_set_without_project_id_creates_project_owned_by_caller(server, user):
    async with ws_connect(server, user.key) as ws:
        answer = await ws.request({"query": {"projects": {"title": "Linear algebra"}}})
        pid = answer["result"]["projects"]["project_id"]
        assert answer["result"]["projects"]["title"] == "Linear algebra"
        assert (server.services.settings.projects_dir / pid).is_dir()
        one = await ws.request(
            {"query": {"projects": {"project_id": pid, "title": None, "created": None}}}
        )
        assert one["result"]["projects"]["title"] == "Linear algebra"
        assert one["result"]["projects"]["created"].endswith("+00:00")
        users = await ws.request(
            {"query": {"project_users": [{"project_id": pid, "account_id": None, "role": None}]}}
        )
        assert users["result"]["project_users"] == [
            {"project_id": pid, "account_id": user.account_id, "role": "owner"}
        ]


async def test_get_many_null_fill_filter_limit_and_order(server, user):
    async with ws_connect(server, user.key) as ws:
        for title in ["b", "a", "c", "a"]:
            await create_project(ws, title)
        rows = await ws.request(
            {
                "query": {"projects": [{"project_id": None, "title": None}]},
                "options": {"order_by": "title"},
            }
        )
        assert [r["title"] for r in rows["result"]["projects"]] == ["a", "a", "b", "c"]
        assert set(rows["result"]["projects"][0]) == {"project_id", "title"}
        desc = await ws.request(
            {
                "query": {"projects": [{"title": None}]},
                "options": {"order_by": "-title", "limit": 2},
            }
        )
        assert desc["result"]["projects"] == [{"title": "c"}, {"title": "b"}]
        only_a = await ws.request({"query": {"projects": [{"project_id": None, "title": "a"}]}})
        assert len(only_a["result"]["projects"]) == 2
        missing = await ws.request(
            {"query": {"projects": {"project_id": str(uuid.uuid4()), "title": None}}}
        )
        assert missing["result"] == {"projects": None}


async def test_update_partial_fields_touches_last_edited_and_keeps_others(server, user):
    async with ws_connect(server, user.key) as ws:
        pid = await create_project(ws, "t")
        before = await ws.request(
            {"query": {"projects": {"project_id": pid, "last_edited": None, "title": None}}}
        )
        await ws.request({"query": {"projects": {"project_id": pid, "description": "d"}}})
        after = await ws.request(
            {
                "query": {
                    "projects": {
                        "project_id": pid,
                        "last_edited": None,
                        "title": None,
                        "description": None,
                    }
                }
            }
        )
        assert after["result"]["projects"]["title"] == "t"
        assert after["result"]["projects"]["description"] == "d"
        assert (
            after["result"]["projects"]["last_edited"] > before["result"]["projects"]["last_edited"]
        )


async def test_non_member_can_neither_read_nor_write_a_project(server, user):
    other = await make_user(server)
    async with ws_connect(server, user.key) as ws, ws_connect(server, other.key) as ws2:
        pid = await create_project(ws, "secret")
        seen = await ws2.request({"query": {"projects": [{"project_id": None, "title": None}]}})
        assert seen["result"]["projects"] == []
        one = await ws2.request({"query": {"projects": {"project_id": pid, "title": None}}})
        assert one["result"]["projects"] is None
        assert (
            code(await ws2.request({"query": {"projects": {"project_id": pid, "title": "x"}}}))
            == "forbidden"
        )
        members = await ws2.request(
            {"query": {"project_users": [{"project_id": pid, "account_id": None}]}}
        )
        assert members["result"]["project_users"] == []
        assert code(await add_member(ws2, pid, other.account_id)) == "forbidden"
        title = await ws.request({"query": {"projects": {"project_id": pid, "title": None}}})
        assert title["result"]["projects"]["title"] == "secret"


async def test_owner_adds_and_removes_collaborator_who_then_reads_and_writes(server, user):
    other = await make_user(server, name="Bob")
    async with ws_connect(server, user.key) as ws, ws_connect(server, other.key) as ws2:
        pid = await create_project(ws, "shared")
        assert (await add_member(ws, pid, other.account_id))["result"]["project_users"] == {
            "project_id": pid,
            "account_id": other.account_id,
            "role": "collaborator",
        }
        assert code(await add_member(ws, pid, other.account_id)) == "conflict"
        assert code(await add_member(ws, pid, str(uuid.uuid4()))) == "not_found"
        ok = await ws2.request({"query": {"projects": {"project_id": pid, "title": "by bob"}}})
        assert "result" in ok
        collabs = await ws2.request(
            {"query": {"collaborators": [{"project_id": pid, "account_id": None, "name": None}]}}
        )
        names = sorted(r["name"] for r in collabs["result"]["collaborators"])
        assert names == ["Bob", "Test User"]
        # A collaborator cannot remove others or the owner; the owner row is protected.
        assert code(await remove_member(ws2, pid, user.account_id)) == "forbidden"
        assert code(await remove_member(ws, pid, user.account_id)) == "forbidden"
        assert "result" in await remove_member(ws, pid, other.account_id)
        gone = await ws2.request({"query": {"projects": {"project_id": pid, "title": None}}})
        assert gone["result"]["projects"] is None


async def test_accounts_shows_only_my_record_and_name_is_the_only_settable_field(server, user):
    other = await make_user(server)
    async with ws_connect(server, user.key) as ws:
        rows = await ws.request({"query": {"accounts": [{"account_id": None, "email": None}]}})
        assert rows["result"]["accounts"] == [{"account_id": user.account_id, "email": user.email}]
        renamed = await ws.request(
            {"query": {"accounts": {"account_id": user.account_id, "name": "Alice"}}}
        )
        assert renamed["result"]["accounts"]["name"] == "Alice"
        assert (
            code(
                await ws.request(
                    {"query": {"accounts": {"account_id": other.account_id, "name": "x"}}}
                )
            )
            == "forbidden"
        )
        assert (
            code(
                await ws.request(
                    {"query": {"accounts": {"account_id": user.account_id, "email": "a@b.cd"}}}
                )
            )
            == "forbidden_field"
        )
        assert code(await ws.request({"query": {"accounts": {"name": "no key"}}})) == "bad_query"


async def test_collaborators_never_expose_email(server, user):
    async with ws_connect(server, user.key) as ws:
        await create_project(ws)
        answer = await ws.request(
            {"query": {"collaborators": [{"project_id": None, "email": None}]}}
        )
        assert code(answer) == "unknown_field"
        assert (
            code(
                await ws.request(
                    {
                        "query": {
                            "collaborators": {
                                "project_id": str(uuid.uuid4()),
                                "account_id": user.account_id,
                                "name": "x",
                            }
                        }
                    }
                )
            )
            == "read_only"
        )


MALFORMED = [
    ({"query": {"nope": [{"a": None}]}}, "unknown_table"),
    ({"query": {"projects": [{"nope": None}]}}, "unknown_field"),
    ({"query": {"projects": [{"title": 5}]}}, "bad_value"),
    ({"query": {"projects": [{"project_id": "not-a-uuid"}]}}, "bad_value"),
    ({"query": {"projects": [{"deleted": "yes"}]}}, "bad_value"),
    ({"query": {"projects": [{"created": "yesterday"}]}}, "bad_value"),
    ({"query": {"projects": [{"title": {"$ne": None}}]}}, "bad_value"),
    ({"query": {"projects": [{"title": ["a"]}]}}, "bad_value"),
    ({"query": {"projects": [{"title": "x" * 600}]}}, "bad_value"),
    ({"query": {"projects": [{"title": "a\u0000b"}]}}, "bad_value"),
    ({"query": {"projects": {"title": "x", "state": "running"}}}, "forbidden_field"),
    ({"query": {"projects": {"title": "x", "created": "2020-01-01T00:00:00"}}}, "forbidden_field"),
    ({"query": {"projects": [{}, {}]}}, "bad_query"),
    ({"query": {"projects": []}}, "bad_query"),
    ({"query": {"projects": "x"}}, "bad_query"),
    ({"query": {"projects": [5]}}, "bad_query"),
    ({"query": {}}, "bad_query"),
    ({"query": {"projects": [{}], "accounts": [{}]}}, "bad_query"),
    ({"query": []}, "bad_query"),
    ({"query": {"projects": {}}}, "bad_query"),
    ({"query": {"projects": [{"title": None}]}, "options": {"limit": 0}}, "bad_options"),
    ({"query": {"projects": [{"title": None}]}, "options": {"limit": True}}, "bad_options"),
    ({"query": {"projects": [{"title": None}]}, "options": {"limit": 10**9}}, "bad_options"),
    ({"query": {"projects": [{"title": None}]}, "options": {"order_by": "x; drop"}}, "bad_options"),
    ({"query": {"projects": [{"title": None}]}, "options": {"evil": 1}}, "bad_options"),
    ({"query": {"projects": [{"title": None}]}, "options": [1]}, "bad_options"),
    ({"query": {"projects": [{"title": None}]}, "changes": "yes"}, "bad_query"),
    ({"query": {"projects": {"title": None}}, "changes": True}, "bad_query"),
    ({"query": {"projects": {"title": "x"}}, "changes": True}, "bad_query"),
    ({"query": {"projects": [{"title": None}]}, "resume": "5"}, "bad_query"),
    ({"query": {"projects": [{"title": None}]}, "changes": True, "resume": "x:y"}, "bad_cursor"),
    ({"query": {"projects": [{"title": None}]}, "changes": True, "resume": 5}, "bad_cursor"),
    ({"query": {"projects": [{"title": None}]}, "changes": True, "resume": "9" * 30}, "bad_cursor"),
    ({"query": {"projects": [{"title": None}]}, "extra": 1}, "bad_message"),
    ({"query": {"projects": {"title": None}}, "options": {"delete": True}}, "bad_query"),
    ({"query": {"projects": {"title": "x"}}, "options": {"delete": "yes"}}, "bad_options"),
    (
        {"query": {"projects": {"project_id": str(uuid.uuid4())}}, "options": {"delete": True}},
        "read_only",
    ),
    (
        {
            "query": {"project_users": {"project_id": str(uuid.uuid4())}},
            "options": {"delete": True},
        },
        "bad_query",
    ),
    ({"cancel": "f-nope"}, "unknown_feed"),
    ({"cancel": 5}, "unknown_feed"),
    ({"cancel": "f-1", "x": 1}, "bad_message"),
]


async def test_malformed_queries_get_error_codes(server, user):
    async with ws_connect(server, user.key) as ws:
        for message, expected in MALFORMED:
            assert code(await ws.request(message)) == expected, message
        assert (await ws.call("ping"))["result"] == "pong"


async def test_oversized_query_is_refused(server, user):
    async with ws_connect(server, user.key) as ws:
        limit = server.services.settings.ws_max_message_bytes
        await ws.send_raw(json.dumps({"id": 1, "query": {"projects": [{"title": "x" * limit}]}}))
        answer = await ws.recv()
        assert answer["error"]["code"] == "too_large"


INJECTIONS = [
    "'; DROP TABLE projects; --",
    '" OR 1=1 --',
    "x' OR 'a'='a",
    "$1",
    "\\'; SELECT pg_sleep(10); --",
    "); DELETE FROM accounts; --",
]


async def test_injection_strings_in_every_position_are_inert(server, user):
    other = await make_user(server)
    async with ws_connect(server, user.key) as ws:
        for evil in INJECTIONS:
            await _probe(ws, evil)
    async with ws_connect(server, other.key) as ws2:
        rows = await ws2.request({"query": {"accounts": [{"account_id": None}]}})
        assert rows["result"]["accounts"] == [{"account_id": other.account_id}]
    assert await server.services.pool.fetchval("SELECT count(*) FROM accounts") == 2
    assert await server.services.pool.fetchval("SELECT count(*) FROM projects") == len(INJECTIONS)


async def _probe(ws, evil: str) -> None:
    pid = await create_project(ws, "safe")
    probes = [
        {"query": {evil: [{"title": None}]}},
        {"query": {"projects": [{evil: None}]}},
        {"query": {"projects": [{"title": evil}]}},
        {"query": {"projects": [{"project_id": evil}]}},
        {"query": {"projects": [{"title": None}]}, "options": {"order_by": evil}},
        {"query": {"projects": [{"title": None}]}, "options": {evil: 1}},
        {"query": {"projects": [{"title": None}]}, "changes": True, "resume": evil},
        {"query": {"projects": {"project_id": evil, "title": "x"}}},
        {"query": {"collaborators": [{"name": evil, "project_id": None}]}},
        {"cancel": evil},
    ]
    for probe in probes:
        answer = await ws.request(probe)
        assert "error" in answer or answer["result"] in ({"projects": []}, {"collaborators": []}), (
            probe,
            answer,
        )
        assert "DROP" not in json.dumps(answer.get("error", {}))
    stored = await ws.request({"query": {"projects": {"project_id": pid, "title": evil}}})
    assert stored["result"]["projects"]["title"] == evil
    back = await ws.request({"query": {"projects": [{"project_id": None, "title": evil}]}})
    assert back["result"]["projects"] == [{"project_id": pid, "title": evil}]


async def test_schema_check_refuses_a_field_the_database_lacks(server, tmp_path: Path):
    (tmp_path / "t.toml").write_text(
        """
[table]
name = "projects"
primary_key = ["project_id"]
[fields]
project_id = "uuid"
colour = "text"
title = "integer"
[get]
scope = "member"
project_field = "project_id"
"""
    )
    schema = schema_mod.load(tmp_path)
    with pytest.raises(schema_mod.SchemaError) as err:
        await schema_mod.check(schema, server.services.pool)
    assert "colour has no column" in str(err.value)
    assert "title is declared integer" in str(err.value)


async def test_server_refuses_to_start_when_the_schema_does_not_match(settings, tmp_path: Path):
    import shutil

    from collab.app import create_app

    schema_dir = tmp_path / "schema"
    shutil.copytree(schema_mod.SCHEMA_DIR, schema_dir)
    text = (schema_dir / "projects.toml").read_text()
    (schema_dir / "projects.toml").write_text(text.replace('state = "text"', 'state = "integer"'))
    # The app's own lifespan (uvicorn would turn the failure into SystemExit).
    app = create_app(settings.replace(tables_schema_dir=schema_dir))
    with pytest.raises(schema_mod.SchemaError, match="state is declared integer"):
        async with app.router.lifespan_context(app):
            pass


def test_schema_loader_rejects_malformed_files(tmp_path: Path):
    (tmp_path / "bad.toml").write_text(
        '[table]\nname = "x; drop"\nprimary_key = ["a"]\n'
        '[fields]\na = "uuid"\n[get]\nscope = "self"\naccount_field = "a"\n'
    )
    with pytest.raises(schema_mod.SchemaError, match="identifier"):
        schema_mod.load(tmp_path)
    (tmp_path / "bad.toml").write_text(
        '[table]\nname = "x"\nprimary_key = ["a"]\n'
        '[fields]\na = "money"\n[get]\nscope = "self"\naccount_field = "a"\n'
    )
    with pytest.raises(schema_mod.SchemaError, match="unknown type"):
        schema_mod.load(tmp_path)
    (tmp_path / "bad.toml").write_text(
        '[table]\nname = "x"\nprimary_key = ["a"]\n'
        '[fields]\na = "uuid"\n[get]\nscope = "everyone"\n'
    )
    with pytest.raises(schema_mod.SchemaError, match="scope"):
        schema_mod.load(tmp_path)


def test_shipped_schema_loads():
    schema = schema_mod.load()
    assert {"accounts", "projects", "project_users", "collaborators"} <= set(schema.tables)
    assert schema.tables["collaborators"].physical == "project_users"
