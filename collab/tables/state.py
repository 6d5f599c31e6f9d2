"""The in-memory mirror the changefeed keeps current: project membership, account names,
and the rows of membership-scoped tables, so that fan-out never queries per event.

A Change is one row of the change log. The mirror is a pure function of the changes
applied to it, so it can also be rewound (`unapply`) to an older position for resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collab.tables.schema import Field, Schema


@dataclass(slots=True)
class Change:
    pos: int
    xid: int
    table: str  # the physical table
    op: str  # 'I', 'U' or 'D'
    old: dict[str, Any] | None  # wire form of the declared fields
    new: dict[str, Any] | None

    def inverse(self) -> Change:
        op = {"I": "D", "D": "I", "U": "U"}[self.op]
        return Change(self.pos, self.xid, self.table, op, self.new, self.old)


Key = tuple[Any, ...]


class Mirror:
    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.members: dict[str, dict[str, str]] = {}
        self.projects_of: dict[str, set[str]] = {}
        self.names: dict[str, str] = {}
        # physical table -> key -> row, and physical table -> project_id -> keys.
        self.rows: dict[str, dict[Key, dict[str, Any]]] = {}
        self.by_project: dict[str, dict[str, set[Key]]] = {}
        self.fields: dict[str, dict[str, Field]] = {}
        self.keys: dict[str, tuple[str, ...]] = {}
        self.project_field: dict[str, str] = {}
        for table in schema.tables.values():
            plain = {n: f for n, f in table.fields.items() if not f.source}
            self.fields.setdefault(table.physical, {}).update(plain)
            if not table.virtual or table.physical not in self.keys:
                self.keys[table.physical] = table.primary_key
            if table.scope == "member":
                self.project_field[table.physical] = table.scope_field
                self.rows.setdefault(table.physical, {})
                self.by_project.setdefault(table.physical, {})
        for name in ("project_users", "accounts"):
            self.fields.setdefault(name, {})

    def normalize(self, table: str, raw: dict[str, Any] | None) -> dict[str, Any] | None:
        """A log row (all columns, JSON) -> the declared fields in wire form."""
        if raw is None:
            return None
        fields = self.fields.get(table)
        if fields is None:
            # A table no schema declares (sessions, api_keys) is logged only for the
            # change hooks (revocation); they get the row as logged, secrets left out.
            return dict(raw)
        row = {n: f.wire(raw.get(n)) for n, f in fields.items()}
        # Membership, names and admin rights are read from these whatever the schema
        # declares.
        for extra in ("project_id", "account_id", "role", "name", "is_admin"):
            if extra in raw and extra not in row:
                row[extra] = str(raw[extra]) if extra.endswith("_id") else raw[extra]
        return row

    def member_set(self, project_id: Any) -> dict[str, str]:
        return self.members.get(project_id, {}) if project_id is not None else {}

    def apply(self, change: Change) -> None:
        old, new, table = change.old, change.new, change.table
        if table in self.rows:
            keys, pf = self.keys[table], self.project_field[table]
            rows, index = self.rows[table], self.by_project[table]
            if old is not None:
                k = tuple(old[n] for n in keys)
                rows.pop(k, None)
                group = index.get(old[pf])
                if group is not None:
                    group.discard(k)
                    if not group:
                        del index[old[pf]]
            if new is not None:
                k = tuple(new[n] for n in keys)
                rows[k] = new
                index.setdefault(new[pf], set()).add(k)
        if table == "project_users":
            if old is not None:
                self._leave(old["project_id"], old["account_id"])
            if new is not None:
                self.members.setdefault(new["project_id"], {})[new["account_id"]] = new["role"]
                self.projects_of.setdefault(new["account_id"], set()).add(new["project_id"])
        elif table == "accounts":
            if old is not None:
                self.names.pop(old["account_id"], None)
            if new is not None:
                self.names[new["account_id"]] = new.get("name", "")

    def unapply(self, change: Change) -> None:
        self.apply(change.inverse())

    def _leave(self, project_id: str, account_id: str) -> None:
        group = self.members.get(project_id)
        if group is not None:
            group.pop(account_id, None)
            if not group:
                del self.members[project_id]
        mine = self.projects_of.get(account_id)
        if mine is not None:
            mine.discard(project_id)
            if not mine:
                del self.projects_of[account_id]

    def copy(self) -> Mirror:
        """An independent copy (resume rewinds it); rows themselves are never mutated."""
        other = Mirror.__new__(Mirror)
        other.schema = self.schema
        other.fields, other.keys, other.project_field = self.fields, self.keys, self.project_field
        other.members = {p: dict(m) for p, m in self.members.items()}
        other.projects_of = {a: set(p) for a, p in self.projects_of.items()}
        other.names = dict(self.names)
        other.rows = {t: dict(r) for t, r in self.rows.items()}
        other.by_project = {
            t: {p: set(k) for p, k in idx.items()} for t, idx in self.by_project.items()
        }
        return other

    def project_rows(self, table: str, project_id: str) -> list[dict[str, Any]]:
        rows = self.rows.get(table, {})
        return [rows[k] for k in self.by_project.get(table, {}).get(project_id, ())]
