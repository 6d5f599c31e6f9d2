"""Terminals: the per-process registry of shared terminals, one per (project, .term path).
A terminal outlives its viewers and is reaped once it has had none, and no input or
output, for the idle time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from uuid import UUID

from collab.config import Settings
from collab.errors import ApiError
from collab.terminals.pty import Terminal

log = logging.getLogger(__name__)

Key = tuple[UUID, str]


class Terminals:
    def __init__(self, settings: Settings, reap_interval: float = 60) -> None:
        self.settings = settings
        self.reap_interval = reap_interval
        self._terminals: dict[Key, Terminal] = {}
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

    def get(self, project_id: UUID, path: str) -> Terminal | None:
        return self._terminals.get((project_id, path))

    def open(self, project_id: UUID, path: str, directory: Path) -> Terminal:
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

        def gone(t: Terminal) -> None:
            if self._terminals.get(key) is t:
                del self._terminals[key]

        terminal = Terminal(
            directory,
            shell,
            scrollback_bytes=self.settings.terminal_scrollback_bytes,
            rate_bytes=self.settings.terminal_rate_bytes,
            on_exit=gone,
        )
        terminal.start()
        self._terminals[key] = terminal
        log.info("terminal started", extra={"event": "terminal.started", "path": path})
        return terminal

    def kill(self, project_id: UUID, path: str) -> bool:
        terminal = self._terminals.pop((project_id, path), None)
        if terminal is None:
            return False
        terminal.kill()
        return True

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
