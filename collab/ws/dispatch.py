"""Api: the registry of /ws operations and calls, and the validation of every frame.

A frame is a JSON object with an `id` and exactly one operation key: `query`, `call`
or `cancel`. Packages register what they serve (`register_call`, `register_operation`);
the loop knows nothing of tables or kernels.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from collab.errors import ApiError
from collab.ws.connection import Connection

log = logging.getLogger(__name__)

# A handler returns its result (sent as {"id", "result"}), a Reply with extra top-level
# fields (a feed id and cursor), or NO_REPLY when it has already sent its answer itself
# (a feed must answer before its first event goes out).
NO_REPLY: Any = object()


@dataclass
class Reply:
    result: Any
    extra: dict[str, Any] = field(default_factory=dict)


CallHandler = Callable[[Connection, dict[str, Any]], Awaitable[Any]]
OperationHandler = Callable[[Connection, dict[str, Any]], Awaitable[Any]]

OPERATIONS = ("query", "call", "cancel")
MAX_ID_LENGTH = 128
MAX_CALL_NAME = 100
MAX_DEPTH = 32


class Api:
    def __init__(self) -> None:
        self._calls: dict[str, CallHandler] = {}
        self._operations: dict[str, OperationHandler] = {"call": self._dispatch_call}
        self.register_call("ping", _ping)

    def register_call(self, name: str, handler: CallHandler) -> None:
        if name in self._calls:
            raise ValueError(f"call {name!r} registered twice")
        self._calls[name] = handler

    def before_call(self, name: str, step: CallHandler) -> None:
        """Run `step(conn, args)` before the call `name` (which must be registered); it
        may raise ApiError to refuse the call. Lets one package guard another's calls
        (the project lifecycle starts a stopped project before a kernel runs)."""
        handler = self._calls[name]

        async def guarded(conn: Connection, args: dict[str, Any]) -> Any:
            await step(conn, args)
            return await handler(conn, args)

        self._calls[name] = guarded

    def register_operation(self, name: str, handler: OperationHandler) -> None:
        if name not in OPERATIONS or name == "call":
            raise ValueError(f"unknown operation {name!r}")
        self._operations[name] = handler

    @property
    def calls(self) -> list[str]:
        return sorted(self._calls)

    async def handle(self, conn: Connection, message: dict[str, Any]) -> Any:
        if not _depth_ok(message):
            raise ApiError("too_deep", f"a message nests at most {MAX_DEPTH} levels")
        ops = [op for op in OPERATIONS if op in message]
        if not ops:
            raise ApiError("unknown_operation", f"a message carries one of {', '.join(OPERATIONS)}")
        if len(ops) > 1:
            raise ApiError("bad_message", "a message carries exactly one operation")
        handler = self._operations.get(ops[0])
        if handler is None:
            raise ApiError("unknown_operation", f"{ops[0]!r} is not served by this server")
        return await handler(conn, message)

    async def _dispatch_call(self, conn: Connection, message: dict[str, Any]) -> Any:
        name = message["call"]
        if not isinstance(name, str) or not name or len(name) > MAX_CALL_NAME:
            raise ApiError("bad_message", "`call` is the name of a call")
        extra = set(message) - {"id", "call", "args"}
        if extra:
            raise ApiError("bad_message", f"unexpected fields: {', '.join(sorted(extra))}")
        handler = self._calls.get(name)
        if handler is None:
            raise ApiError("unknown_call", f"no call named {name!r}")
        args = message.get("args", {})
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise ApiError("bad_args", "`args` is a JSON object")
        return await handler(conn, args)


async def _ping(conn: Connection, args: dict[str, Any]) -> Any:
    if args:
        raise ApiError("bad_args", "ping takes no arguments")
    return "pong"


def _depth_ok(value: Any, limit: int = MAX_DEPTH) -> bool:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def parse_frame(text: str, max_bytes: int) -> tuple[Any, dict[str, Any]]:
    """Return (id, message), or raise ApiError for a frame whose id cannot be known."""
    if len(text) > max_bytes or len(text.encode()) > max_bytes:
        raise ApiError("too_large", f"a message is at most {max_bytes} bytes")
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        raise ApiError("bad_json", "the message is not valid JSON") from None
    if not isinstance(message, dict):
        raise ApiError("bad_message", "a message is a JSON object")
    msg_id = message.get("id")
    if "id" not in message:
        raise ApiError("bad_id", "a message needs an `id` (integer or string)")
    if isinstance(msg_id, bool) or not isinstance(msg_id, int | str):
        raise ApiError("bad_id", "`id` is an integer or a string")
    if isinstance(msg_id, str) and len(msg_id) > MAX_ID_LENGTH:
        raise ApiError("bad_id", f"`id` is at most {MAX_ID_LENGTH} characters")
    if isinstance(msg_id, int) and abs(msg_id) > 2**53:
        raise ApiError("bad_id", "an integer `id` fits in 53 bits")
    return msg_id, message
