"""Kernel execution through the server against a direct jupyter-client baseline, measured
in the same run. Prints a table.

    .venv/bin/python bench/kernels.py [--runs 50] [--seconds 3]

- `pass` and a 1 MB print: /ws `kernel.execute` → the cell idle with its outputs in a
  second client's replica of the document, against `AsyncKernelClient.execute_interactive`.
- kernel start: first execution on a fresh notebook, against `start_kernel` + ready.
- fan-out: a cell streaming ~1000 messages/s, its document updates delivered to 1, 10, 50
  replicas (server CPU, bytes per client, lag of the last replica after the cell ended).

Until the sync rooms land, "a client's document" is a pycrdt replica fed by the room
document's updates in this process (what a room broadcasts, minus the socket).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import uvicorn
import websockets
from jupyter_client.manager import AsyncKernelManager
from jupyter_ydoc import YNotebook
from pycrdt import Array, Doc, Map

from collab.app import create_app
from collab.config import Settings
from collab.db import embedded, migrate
from collab.projects import store


class Room:
    def __init__(self) -> None:
        self.doc = Doc()
        self.kind = "notebook"


class Rooms:
    """The interface of collab.sync's RoomManager, holding documents in memory."""

    def __init__(self) -> None:
        self.rooms: dict[tuple[UUID, str], Room] = {}

    async def open(self, project_id: UUID, path: str) -> Room:
        return self.rooms.setdefault((project_id, path), Room())

    async def close(self, room: Room) -> None:
        pass


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[tuple[Any, int]]:
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for this
        await asyncio.sleep(0.01)
    try:
        yield app, server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


class Ws:
    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.n = 0

    async def call(self, name: str, args: dict[str, Any]) -> Any:
        self.n += 1
        await self.conn.send(json.dumps({"id": self.n, "call": name, "args": args}))
        while True:
            msg = json.loads(await self.conn.recv())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                return msg["result"]


def replicas(doc: Doc, count: int) -> tuple[list[Doc], list[int]]:
    docs = [Doc() for _ in range(count)]
    sent = [0]
    state = doc.get_update()
    for d in docs:
        d.apply_update(state)

    def fan_out(event: Any) -> None:
        sent[0] += len(event.update)
        for d in docs:
            d.apply_update(event.update)

    doc.observe(fan_out)
    return docs, sent


def cell_done(doc: Doc, cell_id: str, count: int) -> bool:
    for c in doc.get("cells", type=Array):
        if isinstance(c, Map) and c.get("id") == cell_id:
            return c.get("execution_state") == "idle" and c.get("execution_count") == count
    return False


async def until(pred: Any, interval: float = 0.0005) -> None:
    # Polling a document predicate; fine-grained so it adds well under a millisecond.
    while not pred():  # noqa: ASYNC110
        await asyncio.sleep(interval)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


async def direct(runs: int, cwd: Path) -> dict[str, Any]:
    km = AsyncKernelManager(kernel_name="python3")
    t = time.perf_counter()
    await km.start_kernel(cwd=str(cwd))
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=60)
    start = time.perf_counter() - t
    out: dict[str, Any] = {"start": start, "pass": [], "mb": []}
    for _ in range(runs):
        t = time.perf_counter()
        await kc.execute_interactive("pass", output_hook=lambda m: None, timeout=60)
        out["pass"].append(time.perf_counter() - t)
    for _ in range(max(3, runs // 10)):
        got: list[int] = []
        t = time.perf_counter()
        await kc.execute_interactive(
            "print('x' * 1_000_000)",
            output_hook=lambda m, got=got: got.append(len(m["content"].get("text", ""))),
            timeout=60,
        )
        out["mb"].append(time.perf_counter() - t)
    kc.stop_channels()
    await km.shutdown_kernel(now=True)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3)
    opts = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="collab-bench-kernels-"))
    url = await asyncio.to_thread(embedded.start, root / "pg", delete_on_exit=True)
    await migrate.migrate(url)
    settings = Settings(data_dir=root / "data", database_url=url, secret="bench")
    rows: list[tuple[str, str, str, str]] = []
    async with serve(settings) as (app, port):
        services = app.state.services
        rooms = Rooms()
        services.extra["rooms"] = rooms
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            r = await http.post(
                "/api/auth/signup",
                json={"email": "b@example.com", "password": "correct horse battery", "name": "B"},
            )
            account = UUID(r.json()["account_id"])
            key = (await http.post("/api/auth/keys", json={"name": "bench"})).json()["key"]
        project = await store.create_project(services.pool, settings.projects_dir, account)
        headers = {"Authorization": f"Bearer {key}"}
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/ws", additional_headers=headers, max_size=None
        ) as conn:
            ws = Ws(conn)

            async def notebook(path: str, cells: list[tuple[str, str]]) -> Doc:
                room = await rooms.open(project, path)
                YNotebook(room.doc).set(
                    {
                        "cells": [
                            {"cell_type": "code", "id": i, "source": s, "metadata": {},
                             "outputs": [], "execution_count": None}
                            for i, s in cells
                        ],
                        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
                    }
                )  # fmt: skip
                return room.doc

            async def run(path: str, doc: Doc, viewer: Doc, cell: str, count: int) -> float:
                t = time.perf_counter()
                await ws.call(
                    "kernel.execute",
                    {"project_id": str(project), "path": path, "cell_ids": [cell]},
                )
                await until(lambda: cell_done(viewer, cell, count))
                return time.perf_counter() - t

            doc = await notebook("a.ipynb", [("p", "pass"), ("mb", "print('x' * 1_000_000)")])
            (viewer,), _ = replicas(doc, 1)
            start = await run("a.ipynb", doc, viewer, "p", 1)
            passes = [await run("a.ipynb", doc, viewer, "p", n + 2) for n in range(opts.runs)]
            count = opts.runs + 2
            mbs = []
            for _ in range(max(3, opts.runs // 10)):
                mbs.append(await run("a.ipynb", doc, viewer, "mb", count))
                count += 1
            base = await direct(opts.runs, settings.projects_dir)
            rows.append(("kernel start (first cell)", f"{start * 1000:.0f} ms",
                         f"{base['start'] * 1000:.0f} ms", ""))  # fmt: skip
            for name, ours, theirs in (
                ("`pass`", passes, base["pass"]),
                ("print 1 MB", mbs, base["mb"]),
            ):
                rows.append(
                    (
                        f"{name} p50 / p95",
                        f"{pct(ours, 0.5):.1f} / {pct(ours, 0.95):.1f} ms",
                        f"{pct(theirs, 0.5):.1f} / {pct(theirs, 0.95):.1f} ms",
                        f"{pct(ours, 0.5) - pct(theirs, 0.5):+.1f} ms at p50",
                    )
                )
            # A million-line print: capped in the document, /healthz probed all along.
            flood_doc = await notebook(
                "flood.ipynb", [("f", "for i in range(1_000_000): print(i)")]
            )
            (flood_viewer,), _ = replicas(flood_doc, 1)
            probes: list[float] = []
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                t = time.perf_counter()
                await ws.call(
                    "kernel.execute",
                    {"project_id": str(project), "path": "flood.ipynb", "cell_ids": ["f"]},
                )
                while not cell_done(flood_viewer, "f", 1):
                    started = time.perf_counter()
                    r = await http.get("/healthz")
                    assert r.status_code == 200
                    probes.append(time.perf_counter() - started)
                    await asyncio.sleep(0.02)
                flood = time.perf_counter() - t
            kept = len(YNotebook(flood_viewer).get()["cells"][0]["outputs"][0]["text"])
            rows.append(
                (
                    "1M-line print: /healthz p50 / max",
                    f"{pct(probes, 0.5):.1f} / {max(probes) * 1000:.1f} ms ({len(probes)} probes)",
                    f"cell done in {flood:.1f} s",
                    f"{kept} characters kept (cap)",
                )
            )
            await ws.call("kernel.shutdown", {"project_id": str(project), "path": "flood.ipynb"})
            stream = (
                "import time\n"
                "t0 = time.time()\n"
                f"for i in range(int({opts.seconds} * 1000)):\n"
                "    print(i, flush=True)\n"
                "    time.sleep(max(0, t0 + (i + 1) / 1000 - time.time()))\n"
            )
            for n in (1, 10, 50):
                path = f"fan{n}.ipynb"
                doc = await notebook(path, [("s", stream)])
                docs, sent = replicas(doc, n)
                await run(path, doc, docs[0], "s", 1)  # warm: start the kernel
                sent[0] = 0
                cpu = time.process_time()
                t = time.perf_counter()
                await ws.call(
                    "kernel.execute", {"project_id": str(project), "path": path, "cell_ids": ["s"]}
                )
                session = services.extra["kernels"].get(project, path)
                # Coarse polling while the cell runs, so the wait costs no CPU worth counting.
                await until(lambda s=session: s is not None and not s.busy, 0.05)
                ended = time.perf_counter()
                await until(lambda docs=docs: all(cell_done(d, "s", 2) for d in docs))
                lag = time.perf_counter() - ended
                wall = time.perf_counter() - t
                used = time.process_time() - cpu
                text = YNotebook(docs[-1]).get()["cells"][0]["outputs"][0]["text"]
                lines = text.count("\n")
                rows.append(
                    (
                        f"stream ~1000 msg/s to {n} client(s)",
                        f"CPU {used / wall * 100:.0f}% of a core, {sent[0] / 1024:.0f} KiB/client",
                        f"{lines} lines in {wall:.1f} s",
                        f"last client +{lag * 1000:.1f} ms after the cell ended",
                    )
                )
                await ws.call("kernel.shutdown", {"project_id": str(project), "path": path})
            await ws.call("kernel.shutdown", {"project_id": str(project), "path": "a.ipynb"})
    widths = [max(len(r[i]) for r in [*rows, HEAD]) for i in range(4)]
    for r in (HEAD, tuple("-" * w for w in widths), *rows):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")


HEAD = ("measure", "collab (server → second client's doc)", "direct jupyter-client", "added")

if __name__ == "__main__":
    asyncio.run(main())
