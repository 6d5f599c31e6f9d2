"""Per-key ordering of one connection's requests: calls that name the same terminal or
kernel (same project and path) run in the order sent; every other request runs at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

Key = tuple[str, str, str]
# Call families whose calls act on one (project_id, path) thing: a terminal.input sent
# right after terminal.open must find the terminal open.
ORDERED_FAMILIES = ("terminal", "kernel")


def order_key(message: dict[str, Any]) -> Key | None:
    """The key a request is ordered by, or None when it may run concurrently with anything."""
    name = message.get("call")
    if not isinstance(name, str):
        return None
    family = name.partition(".")[0]
    if family not in ORDERED_FAMILIES:
        return None
    args = message.get("args")
    if not isinstance(args, dict):
        return None
    project_id, path = args.get("project_id"), args.get("path")
    if not isinstance(project_id, str) or not isinstance(path, str):
        return None  # the call answers bad_args without touching anything
    return family, project_id.lower(), path


class Sequencer:
    """Runs each request as a task; a task with a key waits for the previous one with the
    same key to finish (whatever its outcome) before it starts."""

    def __init__(self) -> None:
        self._tails: dict[Key, asyncio.Task[None]] = {}

    def spawn(
        self,
        key: Key | None,
        make: Callable[[asyncio.Task[None] | None], Coroutine[Any, Any, None]],
    ) -> asyncio.Task[None]:
        previous = self._tails.get(key) if key is not None else None
        task = asyncio.create_task(make(previous))
        if key is not None:
            self._tails[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        return task

    def _forget(self, key: Key, task: asyncio.Task[None]) -> None:
        if self._tails.get(key) is task:
            del self._tails[key]


async def after(previous: asyncio.Task[None] | None) -> None:
    """Wait for `previous` to end, without taking on its result or its cancellation."""
    if previous is not None and not previous.done():
        await asyncio.wait([previous])
