"""Feeds and fan-out: which subscriptions a change reaches, and the events it makes.

Feeds are indexed by table and by account; a change reaches only the accounts its row
is visible to (the row's account, or the members of the row's project from the
mirror). An account's feeds are grouped by (fields, example) and keyed by the row key
their example fixes, so a change is matched once per group that can match it, and
each event body is serialized once per distinct field set, not once per feed.
"""

from __future__ import annotations

import json
from collections import ChainMap
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from collab.tables.schema import Schema, Table
from collab.tables.state import Change, Mirror
from collab.ws.connection import CLOSE_SLOW_CONSUMER

# A prepared event: (pos, xid, body) where body is the JSON text after `{"feed":"…",`.
Pending = tuple[int, int, str]


@dataclass(eq=False)
class Feed:
    feed_id: str
    table: Table
    account_id: str
    names: tuple[str, ...]  # fields in new_val / old_val: every field the query named
    example: dict[str, Any]  # field -> wire value a row must equal
    send: Callable[[str], bool]
    # Set while the initial result or a resume replay is being prepared.
    buffer: list[Pending] | None = field(default_factory=list)
    # (xmin, xmax, in-progress xids) of the initial result's snapshot: changes of
    # transactions visible in it are already in the result and are never sent again.
    snapshot: tuple[int, int, frozenset[int]] | None = None
    drop_snapshot_after_round: int | None = None
    dropped: bool = False
    owner: Any = None  # the connection
    max_buffer: int = 100_000

    def in_snapshot(self, xid: int) -> bool:
        snap = self.snapshot
        if snap is None:
            return False
        xmin, xmax, xip = snap
        return xid < xmin or (xid < xmax and xid not in xip)

    def cursor(self, pos: int) -> str:
        return encode_cursor(pos, self.snapshot)

    def deliver(self, pos: int, xid: int, body: str) -> None:
        if self.buffer is not None:
            if len(self.buffer) >= self.max_buffer and self.owner is not None:
                # Changes arrive faster than this client takes its backlog: treat it as
                # a slow consumer, as its send queue would; it resumes from its cursor.
                self.owner.close(CLOSE_SLOW_CONSUMER)
                return
            self.buffer.append((pos, xid, body))
            return
        if self.in_snapshot(xid):
            return
        self.send(f'{{"feed":"{self.feed_id}",{body},"cursor":"{self.cursor(pos)}"}}')

    async def flush(self, room: Callable[[], Awaitable[None]]) -> None:
        """Send what arrived while the answer was prepared, pacing the backlog by the
        connection's queue (`room`), then go live with nothing reordered."""
        while True:
            pending, self.buffer = self.buffer or [], []
            if not pending:
                self.buffer = None
                return
            for pos, xid, body in pending:
                if not self.in_snapshot(xid):
                    await room()
                    self.send(f'{{"feed":"{self.feed_id}",{body},"cursor":"{self.cursor(pos)}"}}')


def encode_cursor(pos: int, snapshot: tuple[int, int, frozenset[int]] | None) -> str:
    if snapshot is None:
        return str(pos)
    xmin, xmax, xip = snapshot
    return f"{pos}:{xmin}:{xmax}:{','.join(map(str, sorted(xip)))}"


def parse_snapshot(text: str) -> tuple[int, int, frozenset[int]]:
    """PostgreSQL's pg_snapshot text form `xmin:xmax:xip,…`."""
    xmin, xmax, xip = text.split(":")
    return int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x)


MAX_CURSOR = 4096


def decode_cursor(text: Any) -> tuple[int, tuple[int, int, frozenset[int]] | None]:
    from collab.errors import ApiError

    if not isinstance(text, str) or not text or len(text) > MAX_CURSOR:
        raise ApiError("bad_cursor", "`resume` is a cursor string from an event")
    try:
        pos_text, _, snap = text.partition(":")
        pos = int(pos_text)
        snapshot = parse_snapshot(snap) if snap else None
    except ValueError:
        raise ApiError("bad_cursor", "`resume` is not a cursor this server issued") from None
    if pos < 0 or (snapshot and (snapshot[0] < 0 or snapshot[1] < snapshot[0])):
        raise ApiError("bad_cursor", "`resume` is not a cursor this server issued")
    return pos, snapshot


@dataclass(eq=False)
class Group:
    """Feeds of one account that asked the same fields with the same example: a change
    is matched once per group, not once per feed."""

    table: Table
    names: tuple[str, ...]
    example: dict[str, Any]
    feeds: set[Feed] = field(default_factory=set)

    def matches(self, row: dict[str, Any] | None) -> bool:
        if row is None:
            return False
        return all(row.get(k) == v for k, v in self.example.items())


class AccountFeeds:
    """One account's feeds on one table, indexed by the key field their example fixes
    (primary key or project), so a change looks only at groups that can match it."""

    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}
        self.keyed: dict[tuple[str, Any], dict[str, Group]] = {}
        self.unkeyed: dict[str, Group] = {}
        self.key_fields: dict[str, int] = {}
        self.count = 0

    @staticmethod
    def _key_field(feed: Feed) -> str | None:
        t = feed.table
        for name in (*t.primary_key, t.scope_field):
            value = feed.example.get(name)
            if value is not None and isinstance(value, str | int):
                return name
        return None

    def add(self, feed: Feed) -> None:
        gk = json.dumps([feed.names, sorted(feed.example.items())], default=str)
        group = self.groups.get(gk)
        if group is None:
            group = self.groups[gk] = Group(feed.table, feed.names, feed.example)
            kf = self._key_field(feed)
            if kf is None:
                self.unkeyed[gk] = group
            else:
                self.keyed.setdefault((kf, feed.example[kf]), {})[gk] = group
                self.key_fields[kf] = self.key_fields.get(kf, 0) + 1
        group.feeds.add(feed)
        self.count += 1

    def remove(self, feed: Feed) -> None:
        gk = json.dumps([feed.names, sorted(feed.example.items())], default=str)
        group = self.groups.get(gk)
        if group is None or feed not in group.feeds:
            return
        group.feeds.discard(feed)
        self.count -= 1
        if group.feeds:
            return
        del self.groups[gk]
        kf = self._key_field(feed)
        if kf is None:
            self.unkeyed.pop(gk, None)
            return
        bucket = self.keyed.get((kf, feed.example[kf]), {})
        bucket.pop(gk, None)
        if not bucket:
            self.keyed.pop((kf, feed.example[kf]), None)
        self.key_fields[kf] -= 1
        if not self.key_fields[kf]:
            del self.key_fields[kf]

    def candidates(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> Iterable[Group]:
        yield from self.unkeyed.values()
        for kf in self.key_fields:
            a = old.get(kf) if old is not None else None
            b = new.get(kf) if new is not None else None
            if a is not None:
                yield from self.keyed.get((kf, a), {}).values()
            if b is not None and b != a:
                yield from self.keyed.get((kf, b), {}).values()


class FeedIndex:
    """table name -> account id -> that account's feeds, grouped and keyed."""

    def __init__(self) -> None:
        self.by_table: dict[str, dict[str, AccountFeeds]] = {}

    def add(self, feed: Feed) -> None:
        accounts = self.by_table.setdefault(feed.table.name, {})
        accounts.setdefault(feed.account_id, AccountFeeds()).add(feed)

    def remove(self, feed: Feed) -> None:
        accounts = self.by_table.get(feed.table.name)
        if not accounts:
            return
        mine = accounts.get(feed.account_id)
        if mine is not None:
            mine.remove(feed)
            if not mine.count:
                del accounts[feed.account_id]

    def feeds(self, table: str, account_id: str) -> AccountFeeds | None:
        accounts = self.by_table.get(table)
        return accounts.get(account_id) if accounts else None

    def watched(self, table: str) -> bool:
        return bool(self.by_table.get(table))


class _Bodies:
    """Event bodies of one change, serialized once per (table, fields, action)."""

    def __init__(self) -> None:
        self.cache: dict[Any, str] = {}

    def get(
        self,
        feed: Group,
        action: str,
        new: dict[str, Any] | None,
        old: dict[str, Any] | None,
        tag: Any,
    ) -> str:
        key = (feed.table.name, feed.names, action, tag)
        body = self.cache.get(key)
        if body is None:
            parts = [f'"action":"{action}"']
            if new is not None:
                parts.append('"new_val":' + json.dumps({n: new.get(n) for n in feed.names}))
            if old is not None:
                parts.append('"old_val":' + json.dumps({n: old.get(n) for n in feed.names}))
            body = ",".join(parts)
            self.cache[key] = body
        return body


def _view_row(table: Table, row: dict[str, Any] | None, names: Mapping[str, str]) -> Any:
    """The row as `table` shows it: virtual tables add fields joined from accounts."""
    if row is None or not table.virtual:
        return row
    out = dict(row)
    for f in table.fields.values():
        if f.source:
            out[f.name] = names.get(row.get("account_id", ""), "")
    return out


def _same(names: tuple[str, ...], old: dict[str, Any], new: dict[str, Any]) -> bool:
    return all(old.get(n) == new.get(n) for n in names)


def _emit(
    feeds: AccountFeeds,
    change: Change,
    bodies: _Bodies,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    tag: Any,
) -> None:
    for group in feeds.candidates(old, new):
        om, nm = group.matches(old), group.matches(new)
        if om and nm:
            if old is not None and new is not None and _same(group.names, old, new):
                continue  # only fields this feed did not ask for changed
            action, n, o = "update", new, old
        elif nm:
            action, n, o = "insert", new, None
        elif om:
            action, n, o = "delete", None, old
        else:
            continue
        body = bodies.get(group, action, n, o, tag)
        for feed in group.feeds:
            feed.deliver(change.pos, change.xid, body)


def _audience(
    table: Table, row: dict[str, Any] | None, mirror: Mirror
) -> Iterable[str] | dict[str, str]:
    if row is None:
        return ()
    value = row.get(table.scope_field)
    if table.scope == "self":
        return (value,) if value is not None else ()
    return mirror.member_set(value)


def fan_out(change: Change, mirror: Mirror, index: FeedIndex, schema: Schema) -> None:
    """Apply `change` to the mirror and deliver it to every feed it reaches."""
    views = [t for t in schema.views_of(change.table) if index.watched(t.name)]
    names_before: Mapping[str, str] = mirror.names
    if change.table == "accounts" and change.old is not None:
        names_before = ChainMap(
            {change.old["account_id"]: change.old.get("name", "")}, mirror.names
        )
    before: list[tuple[Table, set[str]]] = []
    if views:
        for t in views:
            before.append((t, set(_audience(t, change.old, mirror))))
    old_key = _membership_key(change.old) if change.table == "project_users" else None
    new_key = _membership_key(change.new) if change.table == "project_users" else None
    mirror.apply(change)
    bodies = _Bodies()
    for t, old_aud in before:
        new_aud = set(_audience(t, change.new, mirror))
        old_row = _view_row(t, change.old, names_before)
        new_row = _view_row(t, change.new, mirror.names)
        for account in old_aud | new_aud:
            group = index.feeds(t.name, account)
            if not group:
                continue
            _emit(
                group,
                change,
                bodies,
                old_row if account in old_aud else None,
                new_row if account in new_aud else None,
                (account in old_aud, account in new_aud),
            )
    if change.table == "project_users" and old_key != new_key:
        if old_key is not None:
            _membership_rows(change, mirror, index, schema, bodies, old_key, joined=False)
        if new_key is not None:
            _membership_rows(change, mirror, index, schema, bodies, new_key, joined=True)
    if change.table == "accounts" and change.old and change.new:
        _renamed(change, mirror, index, schema, bodies, names_before)


def _membership_key(row: dict[str, Any] | None) -> tuple[str, str] | None:
    return (row["project_id"], row["account_id"]) if row is not None else None


def _membership_rows(
    change: Change,
    mirror: Mirror,
    index: FeedIndex,
    schema: Schema,
    bodies: _Bodies,
    key: tuple[str, str],
    joined: bool,
) -> None:
    """An account joined (left) a project: it now sees (no longer sees) every row of it."""
    project_id, account_id = key
    for t in schema.tables.values():
        if t.scope != "member":
            continue
        group = index.feeds(t.name, account_id)
        if not group:
            continue
        for raw in mirror.project_rows(t.physical, project_id):
            if t.physical == "project_users" and (raw["project_id"], raw["account_id"]) == key:
                continue  # the membership row itself went out with the change
            row = _view_row(t, raw, mirror.names)
            tag = ("member", joined, t.physical, tuple(raw.get(k) for k in t.primary_key))
            _emit(group, change, bodies, None if joined else row, row if joined else None, tag)


def _renamed(
    change: Change,
    mirror: Mirror,
    index: FeedIndex,
    schema: Schema,
    bodies: _Bodies,
    names_before: Mapping[str, str],
) -> None:
    """An account's name changed: virtual tables that show it change with it."""
    assert change.old is not None and change.new is not None
    account_id = change.new["account_id"]
    if change.old.get("name") == change.new.get("name"):
        return
    for t in schema.tables.values():
        if not t.virtual or not any(f.source for f in t.fields.values()):
            continue
        if not index.watched(t.name):
            continue
        for project_id in mirror.projects_of.get(account_id, ()):
            for raw in mirror.project_rows(t.physical, project_id):
                if raw.get("account_id") != account_id:
                    continue
                old_row = _view_row(t, raw, names_before)
                new_row = _view_row(t, raw, mirror.names)
                for member in mirror.member_set(project_id):
                    group = index.feeds(t.name, member)
                    if group:
                        tag = ("rename", t.name, project_id)
                        _emit(group, change, bodies, old_row, new_row, tag)
