"""Query by example: a /ws `query` frame checked against the schema and turned into SQL
whose every client value is a bind parameter. Identifiers come only from schema/.

    {"projects": [{"project_id": null, "title": null}]}   get many (null = fill in)
    {"projects": {"project_id": "…", "title": null}}      get one
    {"projects": {"project_id": "…", "title": "New"}}     set (no null leaf)
    {"project_users": {...}} with options {"delete": true} delete
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from collab.db.errors import database_unavailable, unavailable
from collab.errors import ApiError
from collab.projects.store import create_project
from collab.tables.schema import Schema, Table

log = logging.getLogger(__name__)

MESSAGE_KEYS = {"id", "query", "changes", "resume", "options"}
OPTION_KEYS = {"limit", "order_by", "delete"}


@dataclass
class Query:
    table: Table
    many: bool
    kind: str  # "get" | "set" | "delete"
    names: list[str]  # fields the query named, in its order
    example: dict[str, Any]  # field -> value parsed for SQL (non-null leaves)
    wire_example: dict[str, Any]  # the same values in wire form, for feeds
    limit: int | None = None
    order_by: str | None = None
    changes: bool = False
    resume: Any = None


@dataclass
class SetRequest:
    """What a before-commit hook sees of a user's write (see Tables.before_commit)."""

    table: str
    account_id: UUID
    op: str  # "insert" | "update" | "delete"
    key: dict[str, Any]
    values: dict[str, Any] = field(default_factory=dict)


SetHook = Callable[[asyncpg.Connection, SetRequest], Awaitable[None]]


def parse(schema: Schema, message: dict[str, Any], max_limit: int) -> Query:
    extra = set(message) - MESSAGE_KEYS
    if extra:
        raise ApiError("bad_message", "unexpected fields in a query message")
    body = message["query"]
    if not isinstance(body, dict) or len(body) != 1:
        raise ApiError("bad_query", "`query` is an object naming exactly one table")
    ((name, spec),) = body.items()
    table = schema.table(name)
    many = isinstance(spec, list)
    if many:
        if len(spec) != 1:
            raise ApiError("bad_query", "a many-query is a list of one example object")
        spec = spec[0]
    if not isinstance(spec, dict):
        raise ApiError("bad_query", "a query's example is an object")
    options = message.get("options", {})
    if options is None:
        options = {}
    if not isinstance(options, dict) or set(options) - OPTION_KEYS:
        raise ApiError("bad_options", f"`options` is an object with {', '.join(OPTION_KEYS)}")
    changes = message.get("changes", False)
    if not isinstance(changes, bool):
        raise ApiError("bad_query", "`changes` is true or false")
    resume = message.get("resume")
    if resume is not None and not changes:
        raise ApiError("bad_query", "`resume` goes with `changes: true`")
    delete = options.get("delete", False)
    if not isinstance(delete, bool):
        raise ApiError("bad_options", "`delete` is true or false")

    names: list[str] = []
    example: dict[str, Any] = {}
    wire: dict[str, Any] = {}
    has_null = False
    for key, value in spec.items():
        if key not in table.fields:
            raise ApiError("unknown_field", f"{table.name} has no such field")
        names.append(key)
        if value is None:
            has_null = True
            continue
        f = table.fields[key]
        example[key] = f.parse(value)
        wire[key] = f.wire(example[key])

    kind = "get" if (many or has_null) else "set"
    if delete:
        if many or has_null:
            raise ApiError("bad_query", "a delete names one row by its primary key, no nulls")
        kind = "delete"
    if kind != "get" and (changes or "limit" in options or "order_by" in options):
        raise ApiError("bad_query", "changes, limit and order_by go with reads")
    if changes and not many:
        raise ApiError("bad_query", "`changes` needs a many-query: {table: [{...}]}")
    if not spec:
        raise ApiError("bad_query", "a query names at least one field")

    limit = options.get("limit")
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= max_limit
    ):
        raise ApiError("bad_options", f"`limit` is an integer from 1 to {max_limit}")
    order_by = options.get("order_by", table.order_by)
    if order_by is not None:
        if not isinstance(order_by, str) or order_by.lstrip("-") not in table.fields:
            raise ApiError("bad_options", "`order_by` is a field name, `-` in front for descending")
    return Query(table, many, kind, names, example, wire, limit, order_by, changes, resume)


def _q(identifier: str) -> str:
    return f'"{identifier}"'


def _column(table: Table, name: str) -> str:
    f = table.fields[name]
    if f.source:
        return f"a.{_q(f.source.split('.')[1])}"
    return f"t.{_q(name)}"


def _scope(table: Table, me: str, role: str | None = None) -> str:
    """The row filter for the caller, with the caller's account id as `me` ($n)."""
    column = f"t.{_q(table.scope_field)}"
    if table.scope == "self":
        return f"{column} = {me}"
    wanted = {"owner": " AND role = 'owner'", "writer": " AND role <> 'viewer'"}.get(role or "", "")
    return f"{column} IN (SELECT project_id FROM project_users WHERE account_id = {me}{wanted})"


def select_sql(q: Query, account_id: UUID, max_rows: int) -> tuple[str, list[Any]]:
    table = q.table
    args: list[Any] = [account_id]
    where = [_scope(table, "$1")]
    for name, value in q.example.items():
        args.append(value)
        where.append(f"{_column(table, name)} = ${len(args)}")
    source = f"{_q(table.physical)} t"
    if any(f.source for f in table.fields.values()):
        source += " JOIN accounts a ON a.account_id = t.account_id"
    cols = ", ".join(f"{_column(table, n)} AS {_q(n)}" for n in q.names)
    order = []
    if q.order_by:
        desc = q.order_by.startswith("-")
        order.append(_column(table, q.order_by.lstrip("-")) + (" DESC" if desc else ""))
    order.extend(_column(table, k) for k in table.primary_key)
    limit = q.limit if q.limit is not None else max_rows + 1
    if not q.many:
        limit = 1
    args.append(limit)
    sql = (
        f"SELECT {cols} FROM {source} WHERE {' AND '.join(where)} "
        f"ORDER BY {', '.join(order)} LIMIT ${len(args)}"
    )
    return sql, args


async def run_get(
    conn: asyncpg.Connection | asyncpg.Pool, q: Query, account_id: UUID, max_rows: int
) -> Any:
    sql, args = select_sql(q, account_id, max_rows)
    try:
        rows = await conn.fetch(sql, *args)
    except asyncpg.DataError as exc:
        log.info(
            "read refused by the database",
            extra={"event": "tables.bad_value", "error": str(exc)[:200]},
        )
        raise ApiError("bad_value", "a value does not fit its field") from None
    if q.many and q.limit is None and len(rows) > max_rows:
        raise ApiError("too_many_rows", f"more than {max_rows} rows match; add a filter or a limit")
    out = [q.table.wire_row(r, q.names) for r in rows]
    if q.many:
        return {q.table.name: out}
    return {q.table.name: out[0] if out else None}


async def run_write(
    pool: asyncpg.Pool,
    q: Query,
    account_id: UUID,
    projects_dir: Any,
    hooks: list[SetHook],
) -> Any:
    table = q.table
    async with pool.acquire() as conn:
        try:
            tx = conn.transaction()
            await tx.start()
            try:
                request = await (_delete if q.kind == "delete" else _set)(
                    conn, q, account_id, projects_dir
                )
                for hook in hooks:
                    await hook(conn, request)
            except BaseException:
                # On a dead connection the rollback fails too; the first error is the story.
                with contextlib.suppress(Exception):
                    await tx.rollback()
                raise
            try:
                await tx.commit()
            except Exception as exc:
                if database_unavailable(exc):
                    # The connection broke during COMMIT: the write may or may not be in.
                    raise unavailable(outcome_unknown=True) from None
                raise
        except ApiError:
            raise
        except asyncpg.ForeignKeyViolationError:
            raise ApiError("not_found", "a row this write refers to does not exist") from None
        except asyncpg.UniqueViolationError:
            raise ApiError("conflict", "a row with this key exists") from None
        except (asyncpg.CheckViolationError, asyncpg.NotNullViolationError):
            raise ApiError("bad_value", "a value breaks a rule of the table") from None
        except asyncpg.DataError as exc:
            log.info(
                "write refused by the database",
                extra={"event": "tables.bad_value", "error": str(exc)[:200]},
            )
            raise ApiError("bad_value", "a value does not fit its field") from None
    result = {**request.key, **request.values}
    return {table.name: {k: table.fields[k].wire(v) for k, v in result.items()}}


def _permission_sql(table: Table, kind: str | bool, me: str) -> str:
    if kind == "self":
        field_name = "account_id" if table.scope == "member" else table.scope_field
        return f"t.{_q(field_name)} = {me}"
    # Writes as a member need a writer's role: a viewer changes nothing.
    return _scope(table, me, "owner" if kind == "owner" else "writer")


async def _set(
    conn: asyncpg.Connection, q: Query, account_id: UUID, projects_dir: Any
) -> SetRequest:
    table = q.table
    if table.virtual:
        raise ApiError("read_only", f"{table.name} is read-only")
    key = {k: q.example[k] for k in table.primary_key if k in q.example}
    values = {k: v for k, v in q.example.items() if k not in key}
    for name in values:
        if name not in table.settable:
            raise ApiError("forbidden_field", f"{table.name}.{name} is not writable")
    if table.insert == "create_project" and not key:
        project_id = await create_project(
            conn,
            projects_dir,
            account_id,
            values.get("title", ""),
            values.get("description", ""),
        )
        return SetRequest(table.name, account_id, "insert", {"project_id": project_id}, values)

    complete = len(key) == len(table.primary_key)
    if complete and table.update and values:
        if table.scope_field in values and table.scope_field not in table.primary_key:
            raise ApiError("forbidden_field", f"{table.name}.{table.scope_field} cannot move")
        args: list[Any] = [account_id]
        sets = []
        for name, value in values.items():
            args.append(value)
            sets.append(f"{_q(name)} = ${len(args)}")
        sets.extend(f"{_q(name)} = now()" for name in table.touch)
        where = [_permission_sql(table, table.update, "$1")]
        for name, value in key.items():
            args.append(value)
            where.append(f"t.{_q(name)} = ${len(args)}")
        sql = (
            f"UPDATE {_q(table.physical)} t SET {', '.join(sets)} "
            f"WHERE {' AND '.join(where)} RETURNING 1"
        )
        if await conn.fetchval(sql, *args):
            return SetRequest(table.name, account_id, "update", key, values)
        if not table.insert:
            raise ApiError("forbidden", "no such row, or you may not change it")
    if not table.insert or table.insert == "create_project":
        if not complete:
            raise ApiError("bad_query", f"a set on {table.name} names its primary key")
        raise ApiError("forbidden", "no such row, or you may not change it")

    row = {**key, **values, **table.values}
    if table.insert == "self" and "account_id" in table.fields:
        row["account_id"] = account_id
    if table.insert in ("member", "owner"):
        project = row.get(table.scope_field)
        if project is None:
            raise ApiError("bad_query", f"an insert into {table.name} names {table.scope_field}")
        wanted = "AND role = 'owner'" if table.insert == "owner" else "AND role <> 'viewer'"
        allowed = await conn.fetchval(
            f"SELECT 1 FROM project_users WHERE project_id = $1 AND account_id = $2 {wanted}",
            project,
            account_id,
        )
        if not allowed:
            raise ApiError("forbidden", "you may not add rows to this project")
    cols = list(row)
    params = [f"${i}" for i in range(1, len(cols) + 1)]
    cols.extend(table.touch)
    params.extend("now()" for _ in table.touch)
    returning = ", ".join(_q(k) for k in table.primary_key)
    sql = (
        f"INSERT INTO {_q(table.physical)} ({', '.join(_q(c) for c in cols)}) "
        f"VALUES ({', '.join(params)}) ON CONFLICT DO NOTHING RETURNING {returning}"
    )
    inserted = await conn.fetchrow(sql, *row.values())
    if inserted is None:
        if table.update:
            raise ApiError("forbidden", "no such row, or you may not change it")
        raise ApiError("conflict", "this row exists already")
    new_key = {k: inserted[k] for k in table.primary_key}
    rest = {k: v for k, v in row.items() if k not in new_key}
    return SetRequest(table.name, account_id, "insert", new_key, rest)


async def _delete(
    conn: asyncpg.Connection, q: Query, account_id: UUID, projects_dir: Any
) -> SetRequest:
    table = q.table
    if table.virtual or not table.delete:
        raise ApiError("read_only", f"rows of {table.name} cannot be deleted")
    if set(q.example) != set(table.primary_key):
        raise ApiError("bad_query", f"a delete names exactly the primary key of {table.name}")
    args: list[Any] = [account_id]
    where = [_permission_sql(table, table.delete, "$1")]
    for name, value in q.example.items():
        args.append(value)
        where.append(f"t.{_q(name)} = ${len(args)}")
    for name, value in table.protect.items():
        args.append(value)
        where.append(f"t.{_q(name)} IS DISTINCT FROM ${len(args)}")
    sql = f"DELETE FROM {_q(table.physical)} t WHERE {' AND '.join(where)} RETURNING 1"
    if not await conn.fetchval(sql, *args):
        raise ApiError("forbidden", "no such row, or you may not delete it")
    return SetRequest(table.name, account_id, "delete", dict(q.example))
