"""Kernel execution through the server against a direct jupyter-client baseline, measured
in the same run. Prints a table.

    .venv/bin/python bench/kernels.py [--runs 50] [--seconds 3] [--only-sandbox]

The server runs as `collab serve` in its own process; clients are real y-websocket
connections to /yjs (pycrdt's sync helpers) and a /ws connection for the calls.

- `pass` and a 1 MB print: /ws `kernel.execute` → the cell idle with its outputs in a
  second client's document, against `AsyncKernelClient.execute_interactive`.
- kernel start: first execution on a fresh notebook, against `start_kernel` + ready.
- a million-line print: /healthz latency while it runs, and what the cap keeps.
- fan-out: a cell streaming 1000 messages/s watched by 1, 10, 50 clients (server CPU,
  bytes per client, lag of the last client behind the first at the end of the cell).
- sandbox: kernel start and `pass` through a server with `sandbox = "bwrap"` against one
  with `--no-sandbox`, side by side (a second table).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import nbformat
import psutil
import websockets
from jupyter_client.manager import AsyncKernelManager
from jupyter_ydoc import YNotebook
from pycrdt import Array, Doc, Map, YMessageType, create_sync_message, handle_sync_message

from collab.db import embedded, migrate
from collab.projects import store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serve(data_dir: Path, url: str, *flags: str) -> AsyncIterator[tuple[int, int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLAB_")}
    cmd = [sys.executable, "-m", "collab.cli", "serve", "--data-dir", str(data_dir)]
    cmd += ["--database-url", url, "--port", str(port), *flags]
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        async with httpx.AsyncClient() as http:
            while True:
                if proc.returncode is not None:
                    raise RuntimeError("server exited")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
        yield port, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)


class Viewer:
    """A y-websocket client keeping a pycrdt Doc in sync with a document on the server."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.doc = Doc()
        self.bytes = 0
        self.synced = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        await self.conn.send(create_sync_message(self.doc))
        with contextlib.suppress(websockets.ConnectionClosed):
            async for message in self.conn:
                self.bytes += len(message)
                if message[0] == YMessageType.SYNC:
                    reply = handle_sync_message(message[1:], self.doc)
                    if reply is not None:
                        await self.conn.send(reply)
                    self.synced.set()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.conn.close()


@contextlib.asynccontextmanager
async def viewers(base: str, count: int) -> AsyncIterator[list[Viewer]]:
    conns = [await websockets.connect(base, max_size=None) for _ in range(count)]
    opened = [Viewer(c) for c in conns]
    try:
        await asyncio.gather(*(asyncio.wait_for(v.synced.wait(), 30) for v in opened))
        await asyncio.sleep(0.2)
        yield opened
    finally:
        for v in opened:
            await v.close()


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


def write_notebook(path: Path, cells: list[tuple[str, str]]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source, id=cell_id) for cell_id, source in cells]
    path.write_text(nbformat.writes(nb))


async def direct(runs: int, cwd: Path) -> dict[str, Any]:
    km = AsyncKernelManager(kernel_name="python3")
    t = time.perf_counter()
    await km.start_kernel(cwd=str(cwd))
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=60)
    out: dict[str, Any] = {"start": time.perf_counter() - t, "pass": [], "mb": []}
    for _ in range(runs):
        t = time.perf_counter()
        await kc.execute_interactive("pass", output_hook=lambda m: None, timeout=60)
        out["pass"].append(time.perf_counter() - t)
    for _ in range(max(3, runs // 10)):
        t = time.perf_counter()
        await kc.execute_interactive(
            "print('x' * 1_000_000)", output_hook=lambda m: None, timeout=60
        )
        out["mb"].append(time.perf_counter() - t)
    kc.stop_channels()
    await km.shutdown_kernel(now=True)
    return out


async def _bench_project(port: int, url: str, data: Path, name: str) -> tuple[UUID, str]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        r = await http.post(
            "/api/auth/signup",
            json={"email": f"{name}@example.com", "password": "correct horse battery"},
        )
        account = UUID(r.json()["account_id"])
        key = (await http.post("/api/auth/keys", json={"name": "bench"})).json()["key"]
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    project = await store.create_project(pool, data / "projects", account)
    await pool.close()
    return project, key


async def sandbox_cost(url: str, root: Path, runs: int, starts: int) -> dict[str, Any]:
    """Kernel starts (first cell of a fresh notebook, each its own kernel) and `pass`
    through two servers, `sandbox = "bwrap"` and `--no-sandbox`, run side by side and
    measured in turns so that the machine's load falls on both alike."""
    modes = {"bwrap": (), "none": ("--no-sandbox",)}
    out: dict[str, dict[str, list[float]]] = {m: {"start": [], "pass": []} for m in modes}
    async with contextlib.AsyncExitStack() as stack:
        ends: dict[str, Any] = {}
        for mode, flags in modes.items():
            data = root / f"data-{mode}"
            port, _ = await stack.enter_async_context(serve(data, url, *flags))
            project, key = await _bench_project(port, url, data, mode)
            conn = await stack.enter_async_context(
                websockets.connect(
                    f"ws://127.0.0.1:{port}/ws",
                    additional_headers={"Authorization": f"Bearer {key}"},
                    max_size=None,
                )
            )
            yjs = f"ws://127.0.0.1:{port}/yjs/{project}/{{path}}?token={key}"
            ends[mode] = (Ws(conn), project, data / "projects" / str(project), yjs)

        async def cell(mode: str, path: str, times: int) -> list[float]:
            ws, project, directory, yjs = ends[mode]
            if times == 1 or not (directory / path).exists():
                write_notebook(directory / path, [("p", "pass")])
            args = {"project_id": str(project), "path": path, "cell_ids": ["p"]}
            took = []
            async with viewers(yjs.format(path=path), 1) as (viewer,):
                for n in range(times):
                    t = time.perf_counter()
                    await ws.call("kernel.execute", args)
                    await until(lambda n=n: cell_done(viewer.doc, "p", n + 1))
                    took.append(time.perf_counter() - t)
            await ws.call("kernel.shutdown", {"project_id": str(project), "path": path})
            return took

        for i in range(starts + 1):  # the first start of each warms the page cache
            for mode in modes:
                took = await cell(mode, f"s{i}.ipynb", 1)
                if i:
                    out[mode]["start"] += took
        for mode in modes:
            out[mode]["pass"] = (await cell(mode, "pass.ipynb", runs + 1))[1:]
    if os.geteuid() == 0:
        from collab.sandbox import users

        users.remove(ends["bwrap"][1])
    return out


def sandbox_rows(cost: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    jail, bare = cost["bwrap"], cost["none"]
    start_j, start_b = pct(jail["start"], 0.5), pct(bare["start"], 0.5)
    return [
        (
            f"kernel start, first cell (median of {len(jail['start'])})",
            f"{start_j:.0f} ms",
            f"{start_b:.0f} ms",
            f"{start_j / start_b:.2f} x",
        ),
        (
            "`pass` p50 / p95",
            f"{pct(jail['pass'], 0.5):.1f} / {pct(jail['pass'], 0.95):.1f} ms",
            f"{pct(bare['pass'], 0.5):.1f} / {pct(bare['pass'], 0.95):.1f} ms",
            f"{pct(jail['pass'], 0.5) - pct(bare['pass'], 0.5):+.2f} ms at p50",
        ),
    ]


def table(head: tuple[str, ...], rows: list[tuple[str, str, str, str]]) -> None:
    widths = [max(len(r[i]) for r in [*rows, head]) for i in range(4)]
    for r in (head, tuple("-" * w for w in widths), *rows):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")


SANDBOX_HEAD = ("measure", "sandbox = bwrap", "sandbox = none", "bwrap against none")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--only-sandbox", action="store_true")
    opts = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="collab-bench-kernels-"))
    try:
        await _main(opts, root)
    finally:
        # The embedded cluster's own files go at exit (delete_on_exit); the rest here.
        shutil.rmtree(root, ignore_errors=True)


async def _main(opts: argparse.Namespace, root: Path) -> None:
    url = await asyncio.to_thread(embedded.start, root / "pg", delete_on_exit=True)
    await migrate.migrate(url)
    cost = await sandbox_cost(url, root, opts.runs, opts.starts)
    if opts.only_sandbox:
        table(SANDBOX_HEAD, sandbox_rows(cost))
        return
    rows: list[tuple[str, str, str, str]] = []
    async with serve(root / "data", url) as (port, pid):
        server = psutil.Process(pid)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            r = await http.post(
                "/api/auth/signup",
                json={"email": "b@example.com", "password": "correct horse battery", "name": "B"},
            )
            account = UUID(r.json()["account_id"])
            key = (await http.post("/api/auth/keys", json={"name": "bench"})).json()["key"]
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        projects_dir = root / "data" / "projects"
        project = await store.create_project(pool, projects_dir, account)
        await pool.close()
        directory = projects_dir / str(project)
        yjs = f"ws://127.0.0.1:{port}/yjs/{project}/{{path}}?token={key}"
        headers = {"Authorization": f"Bearer {key}"}
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/ws", additional_headers=headers, max_size=None
        ) as conn:
            ws = Ws(conn)

            def args(path: str, *cells: str) -> dict[str, Any]:
                return {"project_id": str(project), "path": path, "cell_ids": list(cells)}

            async def run(path: str, viewer: Viewer, cell: str, count: int) -> float:
                t = time.perf_counter()
                await ws.call("kernel.execute", args(path, cell))
                await until(lambda: cell_done(viewer.doc, cell, count))
                return time.perf_counter() - t

            write_notebook(directory / "a.ipynb", [("p", "pass"), ("mb", "print('x' * 1_000_000)")])
            async with viewers(yjs.format(path="a.ipynb"), 1) as (viewer,):
                start = await run("a.ipynb", viewer, "p", 1)
                passes = [await run("a.ipynb", viewer, "p", n + 2) for n in range(opts.runs)]
                count = opts.runs + 2
                mbs = []
                for _ in range(max(3, opts.runs // 10)):
                    mbs.append(await run("a.ipynb", viewer, "mb", count))
                    count += 1
            await ws.call("kernel.shutdown", {"project_id": str(project), "path": "a.ipynb"})
            base = await direct(opts.runs, directory)
            rows.append(
                (
                    "kernel start (first cell)",
                    f"{start * 1000:.0f} ms",
                    f"{base['start'] * 1000:.0f} ms",
                    "",
                )
            )
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
            write_notebook(
                directory / "flood.ipynb", [("f", "for i in range(1_000_000): print(i)")]
            )
            probes: list[float] = []
            async with (
                viewers(yjs.format(path="flood.ipynb"), 1) as (viewer,),
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
            ):
                t = time.perf_counter()
                await ws.call("kernel.execute", args("flood.ipynb", "f"))
                while not cell_done(viewer.doc, "f", 1):
                    started = time.perf_counter()
                    r = await http.get("/healthz")
                    assert r.status_code == 200
                    probes.append(time.perf_counter() - started)
                    await asyncio.sleep(0.02)
                flood = time.perf_counter() - t
                kept = len(YNotebook(viewer.doc).get()["cells"][0]["outputs"][0]["text"])
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
                write_notebook(directory / path, [("s", stream)])
                async with viewers(yjs.format(path=path), n) as docs:
                    await ws.call("kernel.restart", {"project_id": str(project), "path": path})
                    before = [v.bytes for v in docs]
                    cpu = sum(server.cpu_times()[:2])
                    t = time.perf_counter()
                    await ws.call("kernel.execute", args(path, "s"))
                    await until(lambda docs=docs: any(cell_done(v.doc, "s", 1) for v in docs))
                    first = time.perf_counter()
                    await until(lambda docs=docs: all(cell_done(v.doc, "s", 1) for v in docs))
                    last = time.perf_counter()
                    used = sum(server.cpu_times()[:2]) - cpu
                    wall = last - t
                    per_client = sum(v.bytes - b for v, b in zip(docs, before, strict=True)) / n
                    text = YNotebook(docs[-1].doc).get()["cells"][0]["outputs"][0]["text"]
                rows.append(
                    (
                        f"stream 1000 msg/s to {n} client(s)",
                        f"server CPU {used / wall * 100:.0f}% of a core, "
                        f"{per_client / 1024:.0f} KiB/client",
                        f"{text.count(chr(10))} lines in {wall:.1f} s",
                        f"last client +{(last - first) * 1000:.1f} ms after the first",
                    )
                )
                await ws.call("kernel.shutdown", {"project_id": str(project), "path": path})
    table(HEAD, rows)
    print()
    table(SANDBOX_HEAD, sandbox_rows(cost))


HEAD = ("measure", "collab (server → a client's document)", "direct jupyter-client", "added")

if __name__ == "__main__":
    asyncio.run(main())
