"""Terminals: the per-process registry of shared terminals, one per (project, .term path).
A terminal outlives its viewers and is reaped once it has had none, and no input or
output, for the idle time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

from pycrdt import Map

from collab.config import Settings
from collab.errors import ApiError
from collab.kernels.manager import open_room
from collab.sandbox.service import Sandbox
from collab.terminals.pty import Terminal

log = logging.getLogger(__name__)

Key = tuple[UUID, str]


class Terminals:
    def __init__(
        self,
        settings: Settings,
        rooms: Callable[[], Any] = lambda: None,
        reap_interval: float = 60,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.settings = settings
        # Every shell runs in its project's sandbox; one is made if none is given.
        self._own_sandbox = sandbox is None
        self.sandbox = sandbox or Sandbox(settings)
        self.reap_interval = reap_interval
        self._rooms = rooms
        self._terminals: dict[Key, Terminal] = {}
        self._docs: dict[Terminal, Any] = {}  # the .term room each terminal holds open
        self._tasks: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_loop(), name="terminal-reaper")

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for key in list(self._terminals):
            self.kill(*key)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._own_sandbox:
            await self.sandbox.close()

    def get(self, project_id: UUID, path: str) -> Terminal | None:
        return self._terminals.get((project_id, path))

    async def open(self, project_id: UUID, path: str, directory: Path) -> Terminal:
        key = (project_id, path)
        terminal = self._terminals.get(key)
        if terminal is not None and terminal.alive:
            return terminal
        if sum(1 for p, _ in self._terminals if p == project_id) >= (
            self.settings.terminals_per_project
        ):
            raise ApiError(
                "too_many_terminals",
                f"a project runs at most {self.settings.terminals_per_project} terminals",
            )
        shell = self.settings.terminal_shell
        if not os.access(shell, os.X_OK):
            shell = "/bin/sh"

        jail = await self.sandbox.jail(project_id, directory)

        def gone(t: Terminal) -> None:
            self.sandbox.ended(project_id)
            if self._terminals.get(key) is t:
                del self._terminals[key]
            room = self._docs.pop(t, None)
            if room is not None:
                task = asyncio.get_running_loop().create_task(self._rooms().close(room))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        terminal = Terminal(
            directory,
            shell,
            scrollback_bytes=self.settings.terminal_scrollback_bytes,
            rate_bytes=self.settings.terminal_rate_bytes,
            on_exit=gone,
            on_change=self._publish,
            jail=jail,
        )
        rooms = self._rooms()
        room = await open_room(rooms, project_id, path) if rooms is not None else None
        try:
            terminal.start()
            self.sandbox.started(project_id)
        except BaseException:
            if room is not None:
                await rooms.close(room)
            raise
        self._terminals[key] = terminal
        if room is not None:
            self._docs[terminal] = room
            self._publish(terminal)
        log.info("terminal started", extra={"event": "terminal.started", "path": path})
        return terminal

    def _publish(self, terminal: Terminal) -> None:
        """The terminal's state in its .term document (layout: docs/protocol.md)."""
        room = self._docs.get(terminal)
        if room is None:
            return
        doc = room.doc
        state = doc.get("terminal", type=Map)
        rows, cols = terminal.size
        values = {
            "id": terminal.id,
            "status": "running" if terminal.alive else "exited",
            "rows": rows,
            "cols": cols,
            "exit_code": terminal.exit_code,
        }
        with doc.transaction():
            for name, value in values.items():
                if name not in state or state[name] != value:
                    state[name] = value

    def kill(self, project_id: UUID, path: str) -> bool:
        terminal = self._terminals.pop((project_id, path), None)
        if terminal is None:
            return False
        terminal.kill()
        return True

    def kill_project(self, project_id: UUID) -> None:
        for key in [k for k in self._terminals if k[0] == project_id]:
            self.kill(*key)

    def reap(self) -> list[Key]:
        now = time.monotonic()
        idle = [
            key
            for key, t in self._terminals.items()
            if t.viewers == 0 and now - t.last_activity > self.settings.terminal_idle_seconds
        ]
        for key in idle:
            log.info("reaping idle terminal", extra={"event": "terminal.reaped", "path": key[1]})
            self.kill(*key)
        return idle

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self.reap_interval)
            try:
                self.reap()
            except Exception:
                log.exception("reaping terminals failed")
