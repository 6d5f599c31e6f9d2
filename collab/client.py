"""collab.client: an asyncio client for programs. Connect with an API key, then query,
set, delete, call, and follow `changes(query)` — an async iterator that reconnects on
its own and resumes from its last cursor, so no change is missed or seen twice.

    async with Client("ws://localhost:8000", api_key) as c:
        pid = (await c.set("projects", {"title": "Notes"}))["project_id"]
        async for event in c.changes({"projects": [{"project_id": None, "title": None}]}):
            print(event["action"], event.get("new_val"))

While the server's database is unreachable it answers `unavailable`; the client retries
with backoff (for `retry_seconds`) what is safe to repeat: reads (queries with a null
leaf or a list, feeds, the read-only calls in READ_CALLS), and table writes (`set`,
`delete`) that the server reports were not carried out. A write whose commit was cut off
answers `unavailable` with `outcome: "unknown"` and is not retried
(ClientError.outcome_unknown); nor are other calls (kernel.execute, terminal.*), whose
effects may have begun: the caller decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import websockets

log = logging.getLogger(__name__)

# Calls that change nothing: retried like reads.
READ_CALLS = frozenset({"ping", "doc.history", "doc.version", "kernel.status"})
CLOSE_TRY_AGAIN = 1013  # the server could not reach its database when we connected


class ClientError(Exception):
    """An error answer from the server, with its stable code."""

    def __init__(self, code: str, message: str, outcome_unknown: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        # `unavailable` for a write cut off while committing: it may or may not be in.
        self.outcome_unknown = outcome_unknown

    @classmethod
    def from_answer(cls, error: dict[str, Any]) -> ClientError:
        return cls(error["code"], error["message"], error.get("outcome") == "unknown")


class Disconnected(ConnectionError):
    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class Client:
    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        reconnect_delay: float = 0.2,
        max_reconnect_delay: float = 10.0,
        timeout: float = 30.0,
        retry_seconds: float = 60.0,
    ) -> None:
        self.url = url.rstrip("/") + ("" if url.rstrip("/").endswith("/ws") else "/ws")
        self.api_key = api_key
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self._ids = itertools.count(1)
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._feeds: dict[str, asyncio.Queue[dict[str, Any] | None]] = {}
        self._feed_queues: dict[int, asyncio.Queue[dict[str, Any] | None]] = {}
        self._lock = asyncio.Lock()
        self._closed = False
        # The server closed us with 4401: the key was revoked (or the account deleted);
        # reconnecting cannot help, so nothing retries after it.
        self.revoked = False
        self.generation = 0  # bumped on every (re)connection

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def connect(self) -> None:
        async with self._lock:
            if self._ws is not None:
                return
            delay = self.reconnect_delay
            while True:
                try:
                    self._ws = await websockets.connect(
                        self.url,
                        additional_headers={"Authorization": f"Bearer {self.api_key}"},
                        max_size=None,
                    )
                    break
                except (OSError, websockets.InvalidHandshake):
                    if self._closed or self.generation == 0:
                        raise
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.max_reconnect_delay)
            self.generation += 1
            self._reader = asyncio.create_task(self._read(self._ws))

    async def close(self) -> None:
        self._closed = True
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(BaseException):
                await self._reader

    async def _read(self, ws: Any) -> None:
        try:
            async for text in ws:
                message = json.loads(text)
                feed = message.get("feed")
                if "id" in message and message["id"] in self._pending:
                    queue = self._feed_queues.pop(message["id"], None)
                    if queue is not None and "feed" in message:
                        # Registered before any later frame is read: no event is lost.
                        self._feeds[message["feed"]] = queue
                    self._pending.pop(message["id"]).set_result(message)
                elif feed in self._feeds:
                    self._feeds[feed].put_nowait(message)
        except websockets.ConnectionClosed:
            pass
        finally:
            if self._ws is ws:
                self._ws = None
            self.revoked = self.revoked or ws.close_code == 4401
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(self._lost(ws.close_code))
            self._pending.clear()
            self._feed_queues.clear()
            for queue in self._feeds.values():
                queue.put_nowait(None)
            self._feeds.clear()

    def _lost(self, code: int | None) -> Exception:
        if self.revoked:
            return ClientError("unauthenticated", "the API key was revoked or is not valid")
        return Disconnected("connection lost", code)

    async def request(
        self, message: dict[str, Any], *, read: bool = False, retry: bool = False
    ) -> dict[str, Any]:
        """Send one frame and return the whole answer; raise ClientError on an error.
        While the database is unreachable, retry with backoff when `read` (safe to repeat)
        or `retry` (a table write: the server says whether it was carried out)."""
        if not (read or retry):
            return await self._request_once(message)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_seconds
        delay = self.reconnect_delay
        while True:
            try:
                return await self._request_once(message)
            except ClientError as err:
                if err.code != "unavailable" or err.outcome_unknown:
                    raise
                if loop.time() + delay > deadline:
                    raise
            except Disconnected as err:
                # 1013: refused before it was read, like `unavailable`.
                if not (read or err.code == CLOSE_TRY_AGAIN) or loop.time() + delay > deadline:
                    raise
            log.info("database unavailable; retrying in %.1f s", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_reconnect_delay)

    async def _request_once(self, message: dict[str, Any]) -> dict[str, Any]:
        if self._ws is None:
            await self.connect()
        msg_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        try:
            await self._ws.send(json.dumps({"id": msg_id, **message}))
        except websockets.ConnectionClosed as exc:
            self._pending.pop(msg_id, None)
            code = exc.rcvd.code if exc.rcvd else None
            raise Disconnected("connection lost", code) from None
        answer = await asyncio.wait_for(fut, self.timeout)
        if "error" in answer:
            raise ClientError.from_answer(answer["error"])
        return answer

    async def query(self, query: dict[str, Any], **options: Any) -> Any:
        message: dict[str, Any] = {"query": query}
        if options:
            message["options"] = options
        read = _is_read(query) and not options.get("delete")
        return (await self.request(message, read=read, retry=True))["result"]

    async def get(self, table: str, example: dict[str, Any], **options: Any) -> Any:
        """Rows of `table` like `example` (fill the None fields); a list."""
        return (await self.query({table: [example]}, **options))[table]

    async def set(self, table: str, values: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = (await self.query({table: values}))[table]
        return result

    async def delete(self, table: str, key: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = (await self.query({table: key}, delete=True))[table]
        return result

    async def call(self, name: str, args: dict[str, Any] | None = None) -> Any:
        message = {"call": name, "args": args or {}}
        return (await self.request(message, read=name in READ_CALLS))["result"]

    async def changes(self, query: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Yield {"action": "initial", "rows": [...]} and then every change event. Across
        a dropped connection it resumes from the last cursor; if the server no longer has
        that cursor it yields a fresh "initial" (the program should start over)."""
        (table,) = query
        cursor: str | None = None
        feed: str | None = None
        delay = self.reconnect_delay
        try:
            while True:
                queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
                try:
                    if self._ws is None:
                        await self.connect()
                    message: dict[str, Any] = {"query": query, "changes": True}
                    if cursor is not None:
                        message["resume"] = cursor
                    try:
                        answer = await self._subscribe(message, queue)
                    except ClientError as err:
                        if err.code == "unavailable":
                            raise Disconnected("database unavailable") from None
                        if err.code != "cursor_expired":
                            raise
                        cursor = None
                        continue
                    feed, cursor = answer["feed"], answer["cursor"]
                    delay = self.reconnect_delay
                    if "resume" not in message:
                        yield {"action": "initial", "rows": answer["result"][table]}
                    while True:
                        event = await queue.get()
                        if event is None:
                            raise Disconnected("connection lost")
                        if "error" in event:
                            if event["error"]["code"] == "cursor_expired":
                                cursor = None
                                break
                            raise ClientError(event["error"]["code"], event["error"]["message"])
                        cursor = event["cursor"]
                        yield event
                except (Disconnected, OSError, websockets.ConnectionClosed):
                    if self._closed:
                        return
                    if self.revoked:
                        raise self._lost(None) from None
                    log.info("feed connection lost; resuming")
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.max_reconnect_delay)
        finally:
            if feed is not None and self._ws is not None:
                with contextlib.suppress(Exception):
                    await self.request({"cancel": feed})

    async def _subscribe(
        self, message: dict[str, Any], queue: asyncio.Queue[dict[str, Any] | None]
    ) -> dict[str, Any]:
        """Send a feed query; events that race ahead of the answer wait in `queue`."""
        if self._ws is None:
            await self.connect()
        msg_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        self._feed_queues[msg_id] = queue
        try:
            await self._ws.send(json.dumps({"id": msg_id, **message}))
        except websockets.ConnectionClosed:
            raise Disconnected("connection lost") from None
        answer = await asyncio.wait_for(fut, self.timeout)
        if "error" in answer:
            raise ClientError.from_answer(answer["error"])
        return answer


def _is_read(query: dict[str, Any]) -> bool:
    """As the server tells them apart: a list, or an object with a null leaf, is a read."""
    if len(query) != 1:
        return False
    ((_, spec),) = query.items()
    return isinstance(spec, list) or (
        isinstance(spec, dict) and any(v is None for v in spec.values())
    )
