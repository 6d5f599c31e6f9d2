"""Document sync under load: collab (persistence on: every update in PostgreSQL before it
is acknowledged) side by side with pycrdt-websocket (PyPI) serving the same workload
under uvicorn, in memory and with pycrdt-store's SQLiteYStore, in the same run. Prints
a table.

    .venv/bin/python bench/docsync.py [--quick]

Scenarios: fan-out (one writer at 50 updates/s, N readers), saturation (10 writers,
10 readers, rising rates until p99 exceeds 100 ms), join storm (200 clients join a
cold 1 MB document at once). Clients are asyncio websockets + pycrdt in this process
(no permessage-deflate); a delivery's latency is its arrival time at a reader minus
its send time at the writer, matched by the update's (client id, clock).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psutil
import websockets
from pycrdt import Decoder, Doc, Encoder, Text, create_sync_message, create_update_message

PEER = r'''
import asyncio, sys
from pathlib import Path
import uvicorn
from pycrdt import Doc, Text
from pycrdt.websocket import ASGIServer, WebsocketServer, YRoom

files = Path(sys.argv[2])
persist = sys.argv[3] == "sqlite"
if persist:
    from pycrdt.store import SQLiteYStore

    class Store(SQLiteYStore):
        db_path = str(files / "ystore.db")

class FileBacked(WebsocketServer):
    """Loads a cold room from its file, as a deployment (jupyter-collaboration) does."""
    async def get_room(self, name):
        if name not in self.rooms:
            doc = Doc()
            f = files / name.strip("/")
            if f.is_file():
                doc.get("source", type=Text).insert(0, f.read_text())
            ystore = Store(name) if persist else None
            self.rooms[name] = YRoom(ready=True, ydoc=doc, log=self.log, ystore=ystore)
        room = self.rooms[name]
        await self.start_room(room)
        return room

async def main():
    server = FileBacked(auto_clean_rooms=False)
    async with server:
        config = uvicorn.Config(ASGIServer(server), host="127.0.0.1", port=int(sys.argv[1]),
                                log_level="warning", ws_max_size=64 * 1024 * 1024)
        await uvicorn.Server(config).serve()

asyncio.run(main())
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Target:
    name: str
    proc: subprocess.Popen[bytes]
    url: Callable[[str], str]  # document name -> ws url
    files: Path  # where a cold document's file goes
    # Hocuspocus frames every message with the document name and wants an auth message
    # first; y-websocket servers take the plain messages.
    prefix: Callable[[str], bytes] = lambda _doc: b""
    auth: Callable[[str], bytes | None] = lambda _doc: None


def _header(update: bytes) -> tuple[int, int] | None:
    """(client id, clock) of a one-client update: enough to match it to its send."""
    try:
        d = Decoder(update)
        if d.read_var_uint() < 1:
            return None
        d.read_var_uint()
        return d.read_var_uint(), d.read_var_uint()
    except Exception:
        return None


class Peer:
    """One y-websocket client: handshake, then either write or record arrivals."""

    def __init__(self, url: str, prefix: bytes = b"", auth: bytes | None = None) -> None:
        self.url = url
        self.prefix = prefix
        self.auth = auth
        self.conn: websockets.ClientConnection | None = None
        self.synced = asyncio.Event()
        self.arrivals: list[tuple[tuple[int, int], float]] = []
        self.task: asyncio.Task[None] | None = None
        self.record = False

    async def start(self) -> None:
        self.conn = await websockets.connect(
            self.url, max_size=None, compression=None, open_timeout=60, ping_interval=None
        )
        if self.auth is not None:
            await self.conn.send(self.auth)
        await self.conn.send(self.prefix + create_sync_message(Doc()))
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self.conn is not None
        with contextlib.suppress(websockets.ConnectionClosed):
            n = len(self.prefix)
            async for raw in self.conn:
                if not isinstance(raw, bytes) or raw[:n] != self.prefix:
                    continue
                message = raw[n:]
                if len(message) < 2 or message[0] != 0:
                    continue
                sync_type = message[1]
                if sync_type == 0:  # the server's step 1: we have nothing to add
                    await self.conn.send(self.prefix + bytes([0, 1, 2, 0, 0]))
                elif sync_type == 1:
                    self.synced.set()
                elif sync_type == 2 and self.record:
                    now = time.perf_counter()
                    d = Decoder(message[2:])
                    update = d.read_message()
                    key = _header(update) if update else None
                    if key is not None:
                        self.arrivals.append((key, now))

    async def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.conn.close(), 5)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task


class Writer:
    def __init__(self, target: Target, doc: str, client_id: int) -> None:
        self.peer = _peer(target, doc)
        self.doc: Doc = Doc(client_id=client_id)
        self.text = self.doc.get("source", type=Text)
        self.client_id = client_id
        self.sent: dict[tuple[int, int], float] = {}
        self._clock = 0
        self._pending: list[bytes] = []
        self.doc.observe(lambda e: self._pending.append(e.update))

    async def start(self) -> None:
        await self.peer.start()
        await asyncio.wait_for(self.peer.synced.wait(), 60)

    async def write_one(self) -> None:
        token = f"{random.randrange(10**7):07d} "
        key = (self.client_id, self._clock)
        self.text.insert(len(self.text), token)
        self._clock += len(token)
        assert self.peer.conn is not None
        pending, self._pending = self._pending, []
        for update in pending:
            self.sent[key] = time.perf_counter()
            with contextlib.suppress(websockets.ConnectionClosed):
                await self.peer.conn.send(self.peer.prefix + create_update_message(update))

    async def run(self, rate: float, seconds: float) -> None:
        interval = 1 / rate
        start = time.perf_counter()
        n = 0
        while True:
            target = start + n * interval
            now = time.perf_counter()
            if now - start >= seconds:
                return
            if target > now:
                await asyncio.sleep(target - now)
            await self.write_one()
            n += 1


def _peer(target: Target, doc: str) -> Peer:
    return Peer(target.url(doc), target.prefix(doc), target.auth(doc))


def latencies(writers: list[Writer], readers: list[Peer]) -> list[float]:
    sent: dict[tuple[int, int], float] = {}
    for w in writers:
        sent.update(w.sent)
    out = []
    for r in readers:
        for key, at in r.arrivals:
            t0 = sent.get(key)
            if t0 is not None:
                out.append((at - t0) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class Usage:
    """CPU seconds and RSS of a target's server processes (collab: plus PostgreSQL)."""

    def __init__(self, pids: list[int]) -> None:
        self.procs = [psutil.Process(p) for p in pids]

    def cpu(self) -> float:
        total = 0.0
        for p in self.procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def rss_mb(self) -> float:
        with contextlib.suppress(psutil.Error):
            return self.procs[0].memory_info().rss / 2**20
        return float("nan")


async def join_all(peers: list[Peer], timeout: float = 60) -> None:
    await asyncio.gather(*(p.start() for p in peers))
    await asyncio.wait_for(asyncio.gather(*(p.synced.wait() for p in peers)), timeout)


async def fanout(target: Target, readers_n: int, seconds: float) -> dict[str, float]:
    doc = f"bench/fanout-{uuid.uuid4().hex[:8]}.txt"
    writer = Writer(target, doc, 1000)
    await writer.start()
    readers = [_peer(target, doc) for _ in range(readers_n)]
    for i in range(0, readers_n, 50):
        await join_all(readers[i : i + 50])
    for r in readers:
        r.record = True
    usage = Usage([target.proc.pid])
    cpu0, t0 = usage.cpu(), time.perf_counter()
    await writer.run(50, seconds)
    await asyncio.sleep(1.0)
    wall = time.perf_counter() - t0
    cpu = (usage.cpu() - cpu0) / wall * 100
    lat = latencies([writer], readers)
    expected = len(writer.sent) * readers_n
    result = {
        "p50": pct(lat, 0.5),
        "p99": pct(lat, 0.99),
        "cpu": cpu,
        "rss": usage.rss_mb(),
        "lost": expected - len(lat),
    }
    await asyncio.gather(writer.peer.close(), *(r.close() for r in readers))
    return result


async def saturation(target: Target, rates: list[int], seconds: float) -> list[dict[str, float]]:
    doc = f"bench/sat-{uuid.uuid4().hex[:8]}.txt"
    writers = [Writer(target, doc, 2000 + i) for i in range(10)]
    for w in writers:
        await w.start()
    readers = [_peer(target, doc) for _ in range(10)]
    await join_all(readers)
    steps = []
    for rate in rates:
        for r in readers:
            r.arrivals.clear()
            r.record = True
        for w in writers:
            w.sent.clear()
        t0 = time.perf_counter()
        await asyncio.gather(*(w.run(rate, seconds) for w in writers))
        await asyncio.sleep(0.5)
        wall = time.perf_counter() - t0
        lat = latencies(writers, readers)
        steps.append(
            {
                "rate": rate * 10,
                "sent_per_s": sum(len(w.sent) for w in writers) / seconds,
                "delivered_per_s": len(lat) / wall,
                "p99": pct(lat, 0.99),
            }
        )
        if pct(lat, 0.99) > 100:
            break
    await asyncio.gather(*(w.peer.close() for w in writers), *(r.close() for r in readers))
    return steps


async def join_storm(target: Target, clients: int, size: int) -> dict[str, float]:
    name = f"bench/storm-{uuid.uuid4().hex[:8]}.txt"
    path = target.files / name
    path.parent.mkdir(parents=True, exist_ok=True)
    words = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit"]
    rng = random.Random(7)
    text = " ".join(rng.choice(words) for _ in range(size // 6))[:size]
    path.write_text(text)
    peers = [_peer(target, name) for _ in range(clients)]
    t0 = time.perf_counter()
    await asyncio.gather(*(p.start() for p in peers), return_exceptions=True)
    try:
        await asyncio.wait_for(asyncio.gather(*(p.synced.wait() for p in peers)), 60)
    except TimeoutError:
        pass
    elapsed = time.perf_counter() - t0
    hung = sum(not p.synced.is_set() for p in peers)
    await asyncio.gather(*(p.close() for p in peers))
    return {"seconds": elapsed, "hung": hung}


async def wait_http(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError(f"{url}: server exited")
            with contextlib.suppress(httpx.HTTPError):
                await client.get(url, timeout=1)
                return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url}: server did not start")


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as err:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)


_POSTGRES: dict[str, str] = {}


async def start_collab(root: Path) -> Target:
    from collab.db import embedded, migrate
    from collab.db.pool import connect
    from collab.projects.store import create_project

    if "url" not in _POSTGRES:
        maintenance = embedded.start(root / "pgdata", delete_on_exit=True)
        _POSTGRES["url"] = await embedded.ensure_database(maintenance, "bench")
        await migrate.migrate(_POSTGRES["url"])
    url = _POSTGRES["url"]
    port = free_port()
    data = root / "data"
    # pycrdt-websocket's send queues are unbounded; a deep queue keeps collab from
    # disconnecting this (CPU-bound, one-process) load generator as a slow consumer.
    env = {
        **os.environ,
        "COLLAB_SECRET": "bench",
        "COLLAB_LOG_LEVEL": "warning",
        "COLLAB_SYNC_SEND_QUEUE": "1000000",
    }
    proc = _spawn(
        [sys.executable, "-m", "collab.cli", "serve", "--data-dir", str(data),
         "--database-url", url, "--port", str(port)],
        env, root / "collab.log",
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    await wait_http(base + "/healthz", proc)
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        r = await client.post(
            "/api/auth/signup",
            json={
                "email": f"bench-{uuid.uuid4().hex[:8]}@example.com",
                "password": "correct horse battery",
                "name": "B",
            },
        )
        r.raise_for_status()
        key = (await client.post("/api/auth/keys", json={"name": "bench"})).json()["key"]
    conn = await connect(url)
    try:
        project = await create_project(
            conn, data / "projects", uuid.UUID(r.json()["account_id"]), "bench"
        )
    finally:
        await conn.close()
    return Target(
        "collab",
        proc,
        lambda doc: f"ws://127.0.0.1:{port}/yjs/{project}/{doc}?token={key}",
        data / "projects" / str(project),
    )


async def start_peer(root: Path, store: str = "memory") -> Target:
    port = free_port()
    files = root / f"peer-files-{store}"
    files.mkdir(parents=True, exist_ok=True)
    proc = _spawn(
        [sys.executable, "-c", PEER, str(port), str(files), store],
        dict(os.environ),
        root / f"peer-{store}.log",
    )
    await wait_http(f"http://127.0.0.1:{port}/", proc)
    name = "pycrdt-websocket" + ("+sqlite" if store == "sqlite" else "")
    return Target(name, proc, lambda doc: f"ws://127.0.0.1:{port}/{doc}", files)


HOCUSPOCUS = Path(__file__).resolve().parent / "hocuspocus"


def _var_string(text: str) -> bytes:
    encoder = Encoder()
    encoder.write_var_string(text)
    return encoder.to_bytes()


def hocuspocus_ready() -> bool:
    """npm ci once; False (and Hocuspocus is left out) when node or npm is missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return False
    if not (HOCUSPOCUS / "node_modules" / "@hocuspocus" / "server").exists():
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=HOCUSPOCUS, capture_output=True
        )
        if done.returncode != 0:
            return False
    return True


async def start_hocuspocus(root: Path) -> Target:
    port = free_port()
    files = root / "hocuspocus-files"
    files.mkdir(parents=True, exist_ok=True)
    proc = _spawn(
        ["node", str(HOCUSPOCUS / "server.mjs"), str(port), str(files)],
        dict(os.environ),
        root / "hocuspocus.log",
    )
    await wait_http(f"http://127.0.0.1:{port}/", proc)
    return Target(
        "hocuspocus",
        proc,
        lambda _doc: f"ws://127.0.0.1:{port}",
        files,
        prefix=_var_string,
        # [name][2 auth][0 token][""]: no onAuthenticate hook, any token passes.
        auth=lambda doc: _var_string(doc) + bytes([2, 0]) + _var_string(""),
    )


async def start_peer_sqlite(root: Path) -> Target:
    """The peer with its own persistence (pycrdt-store's SQLiteYStore)."""
    return await start_peer(root, "sqlite")


def stop(target: Target) -> None:
    if target.proc.poll() is None:
        target.proc.send_signal(signal.SIGINT)
        try:
            target.proc.wait(20)
        except subprocess.TimeoutExpired:
            target.proc.kill()


async def run(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="collab-bench-"))
    readers = [1, 10, 100] if args.quick else [1, 10, 100, 500]
    rates = [25, 50, 100, 200, 400, 800, 1600]
    seconds = 2.0 if args.quick else 4.0
    scenarios: list[tuple[str, Callable[[Target], Any]]] = [
        *[(f"fanout{n}", partial(fanout, readers_n=n, seconds=seconds)) for n in readers],
        ("sat", partial(saturation, rates=rates, seconds=seconds)),
        ("storm", partial(join_storm, clients=200, size=1_000_000)),
    ]
    results: dict[str, dict[str, Any]] = {}
    try:
        targets: list[tuple[str, Callable[[Path], Any]]] = [
            ("collab", start_collab),
            ("pycrdt-websocket", start_peer),
            ("pycrdt-websocket+sqlite", start_peer_sqlite),
        ]
        if not args.no_hocuspocus and hocuspocus_ready():
            targets.append(("hocuspocus", start_hocuspocus))
        for name, start in targets:
            results[name] = {}
            # A fresh server per scenario: a backlog left by one cannot slow the next.
            for key, scenario in scenarios:
                target = await start(root)
                try:
                    results[name][key] = await scenario(target)
                except Exception as exc:
                    results[name][key] = {"error": f"{type(exc).__name__}: {exc}"[:80]}
                finally:
                    stop(target)
                print(f"{name} {key}: {results[name][key]}", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_table(results, readers)


def print_table(results: dict[str, dict[str, Any]], readers: list[int]) -> None:
    names = list(results)
    width = 46
    print()
    print("fan-out: 1 writer at 50 updates/s, N readers; server CPU (% of one core), RSS (MB),")
    print("updates never delivered (lost)")
    print(f"{'':>5} " + " | ".join(f"{n:^{width}}" for n in names))
    head = f"{'p50 ms':>8} {'p99 ms':>8} {'cpu %':>6} {'rss':>6} {'lost':>6}"
    print(f"{'N':>5} " + " | ".join(f"{head:>{width}}" for _ in names))
    for n in readers:
        row = []
        for name in names:
            r = results[name][f"fanout{n}"]
            if "error" in r:
                row.append(f"{r['error'][:width]:>{width}}")
                continue
            cell = (
                f"{r['p50']:8.2f} {r['p99']:8.2f} {r['cpu']:6.0f} {r['rss']:6.0f} {r['lost']:6.0f}"
            )
            row.append(f"{cell:>{width}}")
        print(f"{n:>5} " + " | ".join(row))
    print()
    print("saturation: 10 writers, 10 readers, rising rates; best delivered updates/s while")
    print("p99 <= 100 ms [offered updates/s -> delivered/s (p99 ms)]")
    for name in names:
        steps = results[name]["sat"]
        if isinstance(steps, dict):
            print(f"  {name:>24}: {steps['error']}")
            continue
        ok = [s for s in steps if s["p99"] <= 100]
        best = max((s["delivered_per_s"] for s in ok), default=0.0)
        detail = ", ".join(
            f"{s['rate']}->{s['delivered_per_s']:.0f} ({s['p99']:.0f})" for s in steps
        )
        print(f"  {name:>24}: {best:7.0f}   [{detail}]")
    print()
    print("join storm: 200 clients join a cold 1 MB document at once")
    for name in names:
        s = results[name]["storm"]
        if "error" in s:
            print(f"  {name:>24}: {s['error']}")
            continue
        print(f"  {name:>24}: all synced in {s['seconds']:.2f} s, hung joins: {s['hung']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, at most 100 readers")
    parser.add_argument("--no-hocuspocus", action="store_true", help="leave Hocuspocus out")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
