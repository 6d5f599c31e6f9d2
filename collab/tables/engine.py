"""The changefeed engine of one server process: the dedicated listener connection that
numbers and reads the change log in commit order, the mirror, the feeds, resume, and
trimming of the log. Published as services.extra["tables"]."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import inspect
import itertools
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import asyncpg

from collab.db.pool import connect
from collab.errors import ApiError
from collab.services import Services
from collab.tables import query as q
from collab.tables.feeds import Feed, FeedIndex, decode_cursor, fan_out, parse_snapshot
from collab.tables.schema import Schema
from collab.tables.state import Change, Mirror

log = logging.getLogger(__name__)

CHANNEL = "collab_table_changes"
BATCH = 5000
# A resume further behind than this is answered with cursor_expired: a fresh query is
# cheaper than replaying, and the replay is held in memory.
MAX_REPLAY = 50_000
RESUME_CONCURRENCY = 4
_TRIGGER_LOCK = 0x7461626C6573
_feed_ids = itertools.count(1)

ChangeHook = Callable[[Change], Any]


class Tables:
    def __init__(self, services: Services, schema: Schema) -> None:
        self.services = services
        self.settings = services.settings
        self.pool = services.pool
        self.schema = schema
        self.mirror = Mirror(schema)
        self.index = FeedIndex()
        self.pos = 0  # the last change dispatched by this process
        self.round_started = 0
        self._wake = asyncio.Event()
        self._pos_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._by_conn: dict[Any, dict[str, Feed]] = {}
        self._per_account: dict[str, int] = {}
        self._snapshot_feeds: set[Feed] = set()
        self._change_hooks: dict[str, list[ChangeHook]] = {}
        self._set_hooks: dict[str, list[q.SetHook]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._resume_slots = asyncio.Semaphore(RESUME_CONCURRENCY)
        self._listener: asyncpg.Connection | None = None
        self.connected = asyncio.Event()
        # Read by operators and the benchmark: how the listener keeps up.
        self.stats = {
            "rounds": 0,
            "changes": 0,
            "round_max_ms": 0.0,
            "round_total_ms": 0.0,
            "read_total_ms": 0.0,
            "gc_full_n": 0,
            "gc_full_max_ms": 0.0,
        }
        self._gc_started = 0.0

    # ---- the interface for other packages (docs/architecture.md) ----

    def on_change(self, table: str, hook: ChangeHook) -> None:
        """Call hook(change) for every committed change of physical `table`, in commit
        order, in every server process. An async hook runs as its own task."""
        self._change_hooks.setdefault(table, []).append(hook)

    def before_commit(self, table: str, hook: q.SetHook) -> None:
        """Run `await hook(conn, request)` inside a user's write to `table`, after the
        row is written and before commit; raising ApiError rejects the write."""
        self._set_hooks.setdefault(table, []).append(hook)

    async def wait_for_pos(self, pos: int, timeout: float = 10) -> None:
        """Wait until this process has dispatched every change up to `pos`."""
        if self.pos >= pos:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pos_waiters.append((pos, fut))
        self._wake.set()
        await asyncio.wait_for(fut, timeout)

    async def current_pos(self) -> int:
        """The position of the latest committed change (numbering it if needed)."""
        pos: int = await self.pool.fetchval("SELECT table_changes_sequence()")
        return pos

    # ---- lifecycle ----

    async def start(self) -> None:
        await self._ensure_triggers()
        await self._load()
        # The mirror lives as long as the process: keep its objects out of the cyclic
        # collector, whose full passes over every tracked object are the longest pauses
        # of a busy server (see "Latency" in docs/architecture.md).
        gc.collect()
        gc.freeze()
        gc.callbacks.append(self._gc_timer)
        self._spawn(self._listen())
        self._spawn(self._trim_loop())
        await asyncio.wait_for(self.connected.wait(), 30)

    def _gc_timer(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif info.get("generation") == 2:
            took = (time.perf_counter() - self._gc_started) * 1000
            self.stats["gc_full_n"] += 1
            self.stats["gc_full_max_ms"] = max(self.stats["gc_full_max_ms"], took)

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._gc_timer)
        gc.unfreeze()  # what was kept for the process's lifetime may go now
        log.info("changefeed stats", extra={"event": "tables.stats", **self.stats})
        tasks = list(self._tasks)
        for _ in range(3):
            if not tasks:
                break
            for task in tasks:
                task.cancel()
            _, pending = await asyncio.wait(tasks, timeout=5)
            tasks = list(pending)
        if tasks:
            log.error("changefeed tasks did not stop", extra={"event": "tables.stop_stuck"})
        if self._listener is not None and not self._listener.is_closed():
            await self._listener.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ensure_triggers(self) -> None:
        """Tables declared later (kernels, …) get the capture trigger without a migration."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _TRIGGER_LOCK)
            for table in sorted(self.schema.physical_tables()):
                found = await conn.fetchval(
                    "SELECT 1 FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = $2",
                    table,
                    f"{table}_changes",
                )
                if not found:
                    await conn.execute(
                        f'CREATE TRIGGER "{table}_changes" AFTER INSERT OR UPDATE OR DELETE '
                        f'ON "{table}" FOR EACH ROW EXECUTE FUNCTION table_changes_capture()'
                    )
                    log.info("change trigger created", extra={"event": "tables.trigger"})

    async def _load(self) -> None:
        """Build the mirror from the tables. Changes committed after the position read
        here are replayed on top; applying a change twice leaves the same state."""
        mirror = Mirror(self.schema)
        async with self.pool.acquire() as conn:
            await conn.fetchval("SELECT table_changes_sequence()")
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                pos = await conn.fetchval("SELECT last_pos FROM table_changes_counter")
                for r in await conn.fetch("SELECT account_id, name FROM accounts"):
                    mirror.names[str(r["account_id"])] = r["name"]
                for table in sorted(mirror.rows.keys() | {"project_users"}):
                    cols = ", ".join(f'"{c}"' for c in mirror.fields[table])
                    for r in await conn.fetch(f'SELECT {cols} FROM "{table}"'):
                        row = mirror.normalize(table, dict(r))
                        mirror.apply(Change(0, 0, table, "I", None, row))
        self.mirror = mirror
        self.pos = pos

    # ---- the listener ----

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect(self.services.database_url)
                self._listener = conn
                lost = asyncio.Event()

                def on_lost(_conn: Any, lost: asyncio.Event = lost) -> None:
                    lost.set()
                    self._wake.set()

                conn.add_termination_listener(on_lost)
                await conn.add_listener(CHANNEL, lambda *_: self._wake.set())
                await self._check_retained(conn)
                await self._catch_up(conn)
                self.connected.set()
                backoff = 0.1
                while not lost.is_set():
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
                    # cancellation that lands as the event fires, and stop() would hang.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.settings.tables_poll_seconds):
                            await self._wake.wait()
                    self._wake.clear()
                    if lost.is_set():
                        break
                    await self._catch_up(conn)
                raise ConnectionError("listener connection lost")
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning(
                    "changefeed listener reconnecting",
                    extra={"event": "tables.listener_lost", "error": type(err).__name__},
                )
                if conn is not None and not conn.is_closed():
                    conn.terminate()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _check_retained(self, conn: asyncpg.Connection) -> None:
        """After a long outage the log may have been trimmed past us: start over."""
        trimmed = await conn.fetchval("SELECT trimmed_through FROM table_changes_counter")
        if trimmed > self.pos:
            log.error("changefeed fell behind the log", extra={"event": "tables.expired"})
            for feeds in list(self._by_conn.values()):
                for feed in list(feeds.values()):
                    feed.send(
                        f'{{"feed":"{feed.feed_id}","error":{{"code":"cursor_expired",'
                        f'"message":"the server lost track of this feed; query again"}}}}'
                    )
                    self._drop(feed)
            await self._load()

    async def _catch_up(self, conn: asyncpg.Connection) -> None:
        """Read and dispatch rounds until one comes back empty. As soon as a round's rows
        are in, the next read is sent, so the database numbers and returns the changes
        that commit meanwhile while this process fans the previous ones out."""
        started = time.perf_counter()
        pending = asyncio.ensure_future(self._read(conn, self.pos))
        try:
            while True:
                this_round, rows = await pending
                if not rows:
                    break
                pending = asyncio.ensure_future(self._read(conn, rows[-1]["pos"]))
                # Let the read go out before the (synchronous) fan-out takes the loop.
                await asyncio.sleep(0)
                for r in rows:
                    self._dispatch(self._change(r))
                self.stats["changes"] += len(rows)
                self._round_done(this_round)
        finally:
            if not pending.done():
                pending.cancel()
        self._round_done(this_round)
        took = (time.perf_counter() - started) * 1000
        self.stats["rounds"] += 1
        self.stats["round_total_ms"] += took
        self.stats["round_max_ms"] = max(self.stats["round_max_ms"], took)

    async def _read(self, conn: asyncpg.Connection, after: int) -> tuple[int, list[Any]]:
        self.round_started += 1
        this_round = self.round_started
        t0 = time.perf_counter()
        rows = await conn.fetch("SELECT * FROM table_changes_read($1, $2)", after, BATCH)
        self.stats["read_total_ms"] += (time.perf_counter() - t0) * 1000
        return this_round, list(rows)

    def _round_done(self, this_round: int) -> None:
        for feed in list(self._snapshot_feeds):
            # Every change of a transaction visible in the feed's snapshot has been
            # numbered by a round that started after the snapshot was taken.
            after = feed.drop_snapshot_after_round
            if after is not None and this_round > after:
                feed.snapshot = None
                self._snapshot_feeds.discard(feed)
        waiting, self._pos_waiters = self._pos_waiters, []
        for pos, fut in waiting:
            if fut.done():
                continue
            if self.pos >= pos:
                fut.set_result(None)
            else:
                self._pos_waiters.append((pos, fut))

    def _change(self, r: asyncpg.Record) -> Change:
        table = r["tbl"]
        return Change(
            r["pos"],
            r["xid"],
            table,
            r["op"].decode() if isinstance(r["op"], bytes) else r["op"],
            self.mirror.normalize(table, r["old"]),
            self.mirror.normalize(table, r["new"]),
        )

    def _dispatch(self, change: Change) -> None:
        try:
            fan_out(change, self.mirror, self.index, self.schema)
        except Exception:
            log.exception("fan-out failed", extra={"event": "tables.fanout_error"})
        self.pos = change.pos
        for hook in self._change_hooks.get(change.table, ()):
            try:
                result = hook(change)
                if inspect.isawaitable(result):
                    self._spawn(result)
            except Exception:
                log.exception("change hook failed", extra={"event": "tables.hook_error"})

    # ---- trimming ----

    async def _trim_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tables_trim_interval)
            try:
                await self.trim()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("change log trim failed", extra={"event": "tables.trim_error"})

    async def trim(self) -> int:
        """Delete log rows older than the maximum age, or beyond the maximum count (but
        never younger than the minimum age); return the new trimmed-through position."""
        s = self.settings
        async with self.pool.acquire() as conn, conn.transaction():
            # No lock on the counter while deleting: numbering goes on meanwhile.
            counter = await conn.fetchrow(
                "SELECT last_pos, trimmed_through FROM table_changes_counter"
            )

            async def newest_older_than(seconds: int) -> int:
                value = await conn.fetchval(
                    """SELECT max(pos) FROM table_changes
                       WHERE pos IS NOT NULL AND at < now() - make_interval(secs => $1)""",
                    float(seconds),
                )
                return int(value or 0)

            by_age = await newest_older_than(s.tables_log_max_age)
            by_size = min(
                counter["last_pos"] - s.tables_log_max_rows,
                await newest_older_than(s.tables_log_min_age),
            )
            cut = max(by_age, by_size)
            if cut <= counter["trimmed_through"]:
                return int(counter["trimmed_through"])
            await conn.execute("DELETE FROM table_changes WHERE pos <= $1", cut)
            await conn.execute(
                "UPDATE table_changes_counter SET trimmed_through = greatest(trimmed_through, $1)",
                cut,
            )
        log.info("change log trimmed", extra={"event": "tables.trim", "through": cut})
        return cut

    # ---- queries and feeds ----

    async def query(self, conn: Any, message: dict[str, Any]) -> Any:
        s = self.settings
        query = q.parse(self.schema, message, s.tables_max_result_rows)
        account_id = conn.account.account_id
        if query.kind == "get" and not query.changes:
            return await q.run_get(self.pool, query, account_id, s.tables_max_result_rows)
        if query.kind != "get":
            hooks = self._set_hooks.get(query.table.physical, [])
            return await q.run_write(self.pool, query, account_id, s.projects_dir, hooks)
        return await self._subscribe(conn, message["id"], query)

    def _check_limits(self, conn: Any, account: str) -> None:
        s = self.settings
        if len(self._by_conn.get(conn, {})) >= s.tables_max_feeds_per_connection:
            raise ApiError(
                "too_many_feeds",
                f"at most {s.tables_max_feeds_per_connection} feeds per connection",
            )
        if self._per_account.get(account, 0) >= s.tables_max_feeds_per_account:
            raise ApiError(
                "too_many_feeds", f"at most {s.tables_max_feeds_per_account} feeds per account"
            )

    def _register(self, conn: Any, query: q.Query) -> Feed:
        account = str(conn.account.account_id)
        self._check_limits(conn, account)
        feed = Feed(
            feed_id=f"f-{next(_feed_ids)}-{secrets.token_hex(4)}",
            table=query.table,
            account_id=account,
            names=tuple(query.names),
            example=query.wire_example,
            send=conn.send,
            owner=conn,
            max_buffer=4 * self.settings.ws_send_queue,
        )
        if conn not in self._by_conn:
            self._by_conn[conn] = {}
            conn.on_close(lambda: self._drop_connection(conn))
        self._by_conn[conn][feed.feed_id] = feed
        self._per_account[account] = self._per_account.get(account, 0) + 1
        self.index.add(feed)
        return feed

    def _drop(self, feed: Feed) -> None:
        feed.dropped = True
        self.index.remove(feed)
        self._snapshot_feeds.discard(feed)
        feeds = self._by_conn.get(feed.owner)
        if feeds is not None and feeds.pop(feed.feed_id, None) is not None:
            left = self._per_account.get(feed.account_id, 1) - 1
            if left > 0:
                self._per_account[feed.account_id] = left
            else:
                self._per_account.pop(feed.account_id, None)

    def _drop_connection(self, conn: Any) -> None:
        for feed in list(self._by_conn.get(conn, {}).values()):
            self._drop(feed)
        self._by_conn.pop(conn, None)

    def feed_count(self) -> int:
        return sum(len(f) for f in self._by_conn.values())

    async def cancel(self, conn: Any, message: dict[str, Any]) -> Any:
        feed_id = message["cancel"]
        if set(message) - {"id", "cancel"}:
            raise ApiError("bad_message", "unexpected fields in a cancel message")
        feed = self._by_conn.get(conn, {}).get(feed_id) if isinstance(feed_id, str) else None
        if feed is None:
            raise ApiError("unknown_feed", "no such feed on this connection")
        self._drop(feed)
        return {"cancelled": feed_id}

    async def _subscribe(self, conn: Any, msg_id: Any, query: q.Query) -> Any:
        from collab.ws.dispatch import NO_REPLY

        s = self.settings
        account_id: UUID = conn.account.account_id
        if query.resume is not None:
            return await self._resume(conn, msg_id, query)
        feed = self._register(conn, query)
        registered_at = self.pos
        try:
            async with (
                self.pool.acquire() as db,
                db.transaction(isolation="repeatable_read", readonly=True),
            ):
                snapshot = await db.fetchval("SELECT pg_current_snapshot()::text")
                result = await q.run_get(db, query, account_id, s.tables_max_result_rows)
        except BaseException:
            self._drop(feed)
            raise
        feed.snapshot = parse_snapshot(snapshot)
        conn.send(
            {
                "id": msg_id,
                "result": result,
                "feed": feed.feed_id,
                "cursor": feed.cursor(registered_at),
            }
        )
        await feed.flush(conn.wait_for_room)
        self._forget_snapshot_later(feed)
        return NO_REPLY

    def _forget_snapshot_later(self, feed: Feed) -> None:
        """The snapshot filter is needed until a round that started after the snapshot
        was taken has been dispatched; counting from now (after the flush) is later
        still, so never too early."""
        if feed.snapshot is not None and not feed.dropped:
            feed.drop_snapshot_after_round = self.round_started
            self._snapshot_feeds.add(feed)

    async def _resume(self, conn: Any, msg_id: Any, query: q.Query) -> Any:
        """Replay the changes after the cursor from the log against a copy of the mirror
        rewound to the cursor, then go live. Exactly once, in commit order."""
        from collab.ws.dispatch import NO_REPLY

        pos, snapshot = decode_cursor(query.resume)
        if pos > self.pos:
            # A cursor from a process that is ahead of us: wait until we have caught up.
            try:
                await self.wait_for_pos(pos, timeout=5)
            except TimeoutError:
                raise ApiError("bad_cursor", "`resume` is ahead of the change log") from None
        # Few resumes at a time: each holds a copy of the mirror and the missed changes.
        async with self._resume_slots:
            feed = self._register(conn, query)
            registered_at = self.pos
            mirror = self.mirror.copy()
            tables = ["project_users", "accounts", query.table.physical]
            try:
                async with (
                    self.pool.acquire() as db,
                    db.transaction(isolation="repeatable_read", readonly=True),
                ):
                    trimmed = await db.fetchval("SELECT trimmed_through FROM table_changes_counter")
                    if pos < trimmed or registered_at - pos > MAX_REPLAY:
                        raise ApiError(
                            "cursor_expired",
                            "the change log no longer reaches this cursor; query again",
                        )
                    rows = await db.fetch(
                        """SELECT pos, xid::text::bigint AS xid, tbl, op, old, new
                           FROM table_changes WHERE pos > $1 AND pos <= $2 AND tbl = ANY($3)
                           ORDER BY pos""",
                        pos,
                        registered_at,
                        tables,
                    )
                changes = [self._change(r) for r in rows]
                del rows
                for n, change in enumerate(reversed(changes)):
                    mirror.unapply(change)
                    if n % 1000 == 999:
                        await asyncio.sleep(0)  # the copy is ours; let the loop breathe
                replay = dataclasses.replace(feed, buffer=[], owner=None)
                index = FeedIndex()
                index.add(replay)
                for n, change in enumerate(changes):
                    fan_out(change, mirror, index, self.schema)
                    if n % 1000 == 999:
                        await asyncio.sleep(0)
            except BaseException:
                self._drop(feed)
                raise
            del mirror, changes
        feed.buffer = (replay.buffer or []) + (feed.buffer or [])
        feed.snapshot = snapshot
        conn.send(
            {
                "id": msg_id,
                "result": {"resumed": True},
                "feed": feed.feed_id,
                "cursor": feed.cursor(pos),
            }
        )
        await feed.flush(conn.wait_for_room)
        self._forget_snapshot_later(feed)
        return NO_REPLY
