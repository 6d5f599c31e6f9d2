"""The table schema: schema/*.toml loaded into Table objects, field types with their
validation and wire form, and the start-up check against the database."""

from __future__ import annotations

import datetime as dt
import json
import re
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from collab.errors import ApiError, valid_unicode

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schema"

# Declared type -> PostgreSQL types it may map to.
TYPES: dict[str, set[str]] = {
    "uuid": {"uuid"},
    "text": {"text", "character varying", "character"},
    "timestamp": {"timestamp with time zone", "timestamp without time zone"},
    "boolean": {"boolean"},
    "integer": {"smallint", "integer", "bigint"},
    "json": {"json", "jsonb"},
}
SCOPES = ("member", "self")
PERMISSIONS = ("member", "owner", "self")
DEFAULT_MAX_TEXT = 100_000
MAX_JSON_BYTES = 100_000
INT_LIMIT = 2**63 - 1


class SchemaError(RuntimeError):
    """The schema files are malformed or do not match the database."""


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    max_length: int = DEFAULT_MAX_TEXT
    # "table.column" joined by account_id, for virtual tables (collaborators.name).
    source: str | None = None

    def parse(self, value: Any) -> Any:
        """A client value -> the Python value for asyncpg, or ApiError bad_value."""
        try:
            return _PARSERS[self.type](self, value)
        except ApiError:
            raise
        except (ValueError, TypeError, OverflowError):
            raise ApiError("bad_value", f"{self.name}: expected {self.type}") from None

    def wire(self, value: Any) -> Any:
        """A value from asyncpg or from the change log's JSON -> its one wire form."""
        if value is None:
            return None
        if self.type == "uuid":
            return str(value)
        if self.type == "timestamp":
            if isinstance(value, str):
                value = dt.datetime.fromisoformat(value)
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)
            return value.astimezone(dt.UTC).isoformat()
        return value


def _text(f: Field, value: Any) -> str:
    if not isinstance(value, str):
        raise ApiError("bad_value", f"{f.name}: expected text")
    if len(value) > f.max_length:
        raise ApiError("bad_value", f"{f.name}: at most {f.max_length} characters")
    if "\x00" in value:
        raise ApiError("bad_value", f"{f.name}: text may not contain NUL")
    if not valid_unicode(value):
        raise ApiError("bad_value", f"{f.name}: text is valid Unicode (no lone surrogates)")
    return value


def _uuid(f: Field, value: Any) -> uuid.UUID:
    if not isinstance(value, str) or len(value) > 64:
        raise ApiError("bad_value", f"{f.name}: expected a UUID string")
    return uuid.UUID(value)


def _boolean(f: Field, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ApiError("bad_value", f"{f.name}: expected true or false")
    return value


def _integer(f: Field, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > INT_LIMIT:
        raise ApiError("bad_value", f"{f.name}: expected an integer")
    return value


def _timestamp(f: Field, value: Any) -> dt.datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise ApiError("bad_value", f"{f.name}: expected an ISO 8601 timestamp")
    parsed = dt.datetime.fromisoformat(value)
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    # In UTC now: a time past year 9999 or before year 1 once shifted (OverflowError)
    # is the client's bad value, not a failure when it is sent to PostgreSQL.
    return parsed.astimezone(dt.UTC)


def _json(f: Field, value: Any) -> Any:
    # No NaN or Infinity, no lone surrogates: PostgreSQL's jsonb takes neither.
    text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    if not valid_unicode(text):
        raise ApiError("bad_value", f"{f.name}: text is valid Unicode (no lone surrogates)")
    if len(text.encode()) > MAX_JSON_BYTES:
        raise ApiError("bad_value", f"{f.name}: at most {MAX_JSON_BYTES} bytes of JSON")
    return value


_PARSERS = {
    "uuid": _uuid,
    "text": _text,
    "timestamp": _timestamp,
    "boolean": _boolean,
    "integer": _integer,
    "json": _json,
}


@dataclass(frozen=True)
class Table:
    name: str
    fields: dict[str, Field]
    primary_key: tuple[str, ...]
    # The physical table rows live in (itself, or the one a virtual table views).
    physical: str
    scope: str
    scope_field: str
    order_by: str | None
    settable: frozenset[str] = frozenset()
    touch: tuple[str, ...] = ()
    values: dict[str, Any] = field(default_factory=dict)
    insert: str | bool = False
    update: str | bool = False
    delete: str | bool = False
    protect: dict[str, Any] = field(default_factory=dict)

    @property
    def virtual(self) -> bool:
        return self.physical != self.name

    def key_of(self, row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row.get(k) for k in self.primary_key)

    def wire_row(self, row: Any, names: list[str] | None = None) -> dict[str, Any]:
        return {n: self.fields[n].wire(row[n]) for n in (names or self.fields)}


@dataclass
class Schema:
    tables: dict[str, Table]

    def table(self, name: Any) -> Table:
        if not isinstance(name, str) or name not in self.tables:
            raise ApiError("unknown_table", "no such table")
        return self.tables[name]

    def physical_tables(self) -> set[str]:
        return {t.physical for t in self.tables.values()}

    def views_of(self, physical: str) -> list[Table]:
        return [t for t in self.tables.values() if t.physical == physical]


def _permission(name: str, value: Any, allowed: tuple[str, ...]) -> str | bool:
    if value is False or value in allowed:
        return value
    raise SchemaError(f"{name}: expected false or one of {', '.join(allowed)}, got {value!r}")


def parse_table(data: dict[str, Any], origin: str) -> Table:
    try:
        meta = data["table"]
        name = meta["name"]
        fields: dict[str, Field] = {}
        for fname, spec in data["fields"].items():
            if isinstance(spec, str):
                spec = {"type": spec}
            if spec["type"] not in TYPES:
                raise SchemaError(f"{origin}: field {fname}: unknown type {spec['type']!r}")
            fields[fname] = Field(
                fname,
                spec["type"],
                int(spec.get("max_length", DEFAULT_MAX_TEXT)),
                spec.get("from"),
            )
        get = data["get"]
        setr = data.get("set", {})
        scope = get["scope"]
        if scope not in SCOPES:
            raise SchemaError(f"{origin}: get.scope is one of {', '.join(SCOPES)}")
        scope_field = get["project_field"] if scope == "member" else get["account_field"]
        primary_key = tuple(meta["primary_key"])
        insert = setr.get("insert", False)
        if insert != "create_project":
            insert = _permission(f"{origin}: set.insert", insert, PERMISSIONS)
        table = Table(
            name=name,
            fields=fields,
            primary_key=primary_key,
            physical=meta.get("virtual", name),
            scope=scope,
            scope_field=scope_field,
            order_by=get.get("order_by"),
            settable=frozenset(setr.get("fields", [])),
            touch=tuple(setr.get("touch", [])),
            values=dict(setr.get("values", {})),
            insert=insert,
            update=_permission(f"{origin}: set.update", setr.get("update", False), PERMISSIONS),
            delete=_permission(f"{origin}: set.delete", setr.get("delete", False), PERMISSIONS),
            protect=dict(setr.get("protect", {})),
        )
    except KeyError as err:
        raise SchemaError(f"{origin}: missing {err.args[0]!r}") from None
    for ident in (name, table.physical, *fields):
        if not _IDENT.match(ident):
            raise SchemaError(f"{origin}: {ident!r} is not a plain SQL identifier")
    named = {*primary_key, scope_field, *table.settable, *table.touch, *table.values}
    order = (table.order_by or "").lstrip("-")
    if order:
        named.add(order)
    for fname in named:
        if fname not in fields:
            raise SchemaError(f"{origin}: {fname!r} is used but not declared in [fields]")
    for f in fields.values():
        if f.source and (not table.virtual or f.source != "accounts.name"):
            raise SchemaError(f"{origin}: field {f.name}: only virtual tables join accounts.name")
    if table.virtual and "account_id" not in fields and any(f.source for f in fields.values()):
        raise SchemaError(f"{origin}: a joined field needs account_id in the table")
    return table


def load(directory: Path = SCHEMA_DIR) -> Schema:
    tables: dict[str, Table] = {}
    for path in sorted(directory.glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise SchemaError(f"{path.name}: {err}") from None
        table = parse_table(data, path.name)
        if table.name in tables:
            raise SchemaError(f"{path.name}: table {table.name!r} declared twice")
        tables[table.name] = table
    for table in tables.values():
        if table.virtual and table.physical in tables and tables[table.physical].virtual:
            raise SchemaError(f"{table.name}: a virtual table views a physical table")
    return Schema(tables)


async def check(schema: Schema, conn: asyncpg.Pool | asyncpg.Connection) -> None:
    """Refuse to start unless every declared field exists with a compatible type."""
    rows = await conn.fetch(
        """SELECT table_name, column_name, data_type FROM information_schema.columns
           WHERE table_schema = current_schema()"""
    )
    columns: dict[str, dict[str, str]] = {}
    for r in rows:
        columns.setdefault(r["table_name"], {})[r["column_name"]] = r["data_type"]
    problems = []
    for table in schema.tables.values():
        have = columns.get(table.physical)
        if have is None:
            problems.append(f"table {table.name}: no table {table.physical!r} in the database")
            continue
        for f in table.fields.values():
            if f.source:
                src_table, src_col = f.source.split(".")
                kind = columns.get(src_table, {}).get(src_col)
            else:
                kind = have.get(f.name)
            if kind is None:
                problems.append(f"table {table.name}: field {f.name} has no column")
            elif kind not in TYPES[f.type]:
                problems.append(
                    f"table {table.name}: field {f.name} is declared {f.type} but the column is {kind}"
                )
    if problems:
        raise SchemaError("schema does not match the database:\n  " + "\n  ".join(problems))
