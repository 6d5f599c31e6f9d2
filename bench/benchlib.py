"""What every benchmark shares: percentiles, free ports, the machine's load, the CPU and
RSS of a server together with its PostgreSQL, and one event loop for every Python peer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import psutil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f} on {os.cpu_count()} cores"


def loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, Any]) -> Any:
    """The same loop as uvicorn's "auto" picks for the servers: uvloop when installed."""
    if loop_name() == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def postgres_pids(pgdata: Path) -> list[int]:
    """The postmaster of `pgdata` and all its children (backends, checkpointer, WAL
    writer): the database's share of a server's work."""
    try:
        first = (pgdata / "postmaster.pid").read_text().split()[0]
        postmaster = psutil.Process(int(first))
    except (OSError, ValueError, IndexError, psutil.Error):
        return []
    return [postmaster.pid, *(c.pid for c in postmaster.children(recursive=True))]


class Usage:
    """CPU seconds and RSS of a set of processes, counted again at each reading so that
    PostgreSQL backends started meanwhile are included (one that exits between two
    readings loses its CPU: a small undercount)."""

    def __init__(self, pids: list[int], pgdata: Path | None = None) -> None:
        self.pids = pids
        self.pgdata = pgdata
        self._seen: dict[int, tuple[psutil.Process, float]] = {}

    def _procs(self) -> list[psutil.Process]:
        pids = list(self.pids)
        for pid in self.pids:
            with contextlib.suppress(psutil.Error):
                pids += [c.pid for c in psutil.Process(pid).children(recursive=True)]
        if self.pgdata is not None:
            pids += postgres_pids(self.pgdata)
        out = []
        for pid in dict.fromkeys(pids):
            with contextlib.suppress(psutil.Error):
                out.append(psutil.Process(pid))
        return out

    def cpu(self) -> float:
        total = 0.0
        for p in self._procs():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def rss_mb(self) -> float:
        """Resident set of all the processes (PostgreSQL's shared buffers count once
        per backend that touched them: an overcount, the same for every run)."""
        total = 0
        for p in self._procs():
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total / 2**20


def own_cpu() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system
