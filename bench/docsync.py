"""Document sync under load: collab (persistence on: every update in PostgreSQL before it
is acknowledged) side by side with pycrdt-websocket (PyPI) serving the same workload
under uvicorn, in memory and with pycrdt-store's SQLiteYStore, in the same run. Prints
a table.

    .venv/bin/python bench/docsync.py [--quick]

Scenarios: fan-out (one writer at 50 updates/s, N readers), saturation (10 writers,
10 readers; offered updates/s on a fine ladder of --ladder-step (250) until p99 passes
100 ms, then the edge is bisected; for collab also send-to-ack latency with ?acks=1 at
half its saturated rate), join storm (200 clients join a cold 1 MB document at once).
Clients are asyncio websockets + pycrdt (no permessage-deflate) in GENERATORS child
processes, each one's CPU printed so that a saturated generator shows; a delivery's
latency is its arrival time at a reader minus its send time at the writer (one
monotonic clock for all processes), matched by the update's (client id, clock).
Server CPU and RSS of collab include its PostgreSQL's processes.

A/B against an earlier commit, collab only, saturation only:

    git archive <commit> | tar -x -C /tmp/collab-base
    .venv/bin/python bench/docsync.py --only-collab --base /tmp/collab-base --scenarios sat
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import shutil
import signal
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
import websockets
from pycrdt import Decoder, Doc, Encoder, Text, create_sync_message, create_update_message

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib
from benchlib import Usage, free_port, own_cpu, pct

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


@dataclass(frozen=True)
class Spec:
    """How to reach a target; picklable, so the load generator processes get it."""

    name: str
    port: int
    style: str  # "y-websocket", "collab" or "hocuspocus"
    path_prefix: str = ""  # collab: /yjs/{project}/
    key: str = ""  # collab: an API key

    def url(self, doc: str, acks: bool = False) -> str:
        if self.style == "hocuspocus":
            return f"ws://127.0.0.1:{self.port}"
        if self.style == "collab":
            extra = "&acks=1" if acks else ""
            return f"ws://127.0.0.1:{self.port}{self.path_prefix}{doc}?token={self.key}{extra}"
        return f"ws://127.0.0.1:{self.port}/{doc}"

    def prefix(self, doc: str) -> bytes:
        # Hocuspocus frames every message with the document name and wants an auth
        # message first; y-websocket servers take the plain messages.
        return _var_string(doc) if self.style == "hocuspocus" else b""

    def auth(self, doc: str) -> bytes | None:
        if self.style != "hocuspocus":
            return None
        # [name][2 auth][0 token][""]: no onAuthenticate hook, any token passes.
        return _var_string(doc) + bytes([2, 0]) + _var_string("")


@dataclass
class Target:
    spec: Spec
    proc: subprocess.Popen[bytes]
    files: Path  # where a cold document's file goes
    pgdata: Path | None = None  # collab: its PostgreSQL, counted in its CPU and RSS

    @property
    def name(self) -> str:
        return self.spec.name

    def usage(self) -> Usage:
        return Usage([self.proc.pid], self.pgdata)


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
        self.acks: list[tuple[int, float]] = []  # (stored count, arrival) from collab
        # SYNC step-2 and update messages sent: what collab's acknowledgement counts.
        self.counted = 0
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
                if len(message) >= 2 and message[0] == 8 and not self.prefix:
                    self.acks.append((Decoder(message[1:]).read_var_uint(), time.perf_counter()))
                    continue
                if len(message) < 2 or message[0] != 0:
                    continue
                sync_type = message[1]
                if sync_type == 0:  # the server's step 1: we have nothing to add
                    self.counted += 1
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
    def __init__(self, spec: Spec, doc: str, client_id: int, acks: bool = False) -> None:
        self.peer = Peer(spec.url(doc, acks), spec.prefix(doc), spec.auth(doc))
        self.doc: Doc = Doc(client_id=client_id)
        self.text = self.doc.get("source", type=Text)
        self.client_id = client_id
        self.sent: dict[tuple[int, int], float] = {}
        self.send_times: dict[int, float] = {}  # the connection's message count -> sent
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
            self.peer.counted += 1
            self.send_times[self.peer.counted] = self.sent[key]
            with contextlib.suppress(websockets.ConnectionClosed):
                await self.peer.conn.send(self.peer.prefix + create_update_message(update))

    def ack_latencies(self, since: int) -> list[float]:
        """Send-to-acknowledgement, in ms, of the updates sent after message `since`."""
        out = []
        done = since
        for count, at in self.peer.acks:
            for c in range(done + 1, count + 1):
                sent = self.send_times.get(c)
                if sent is not None:
                    out.append((at - sent) * 1000)
            done = max(done, count)
        return out

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


# -- load generators: child processes, so that the clients are never the bottleneck --


def generator_main(spec: Spec, pipe: Any) -> None:
    benchlib.run(_generator(spec, pipe))


async def _generator(spec: Spec, pipe: Any) -> None:
    """Commands over `pipe`: ("join", doc, writer client ids, readers, acks), ("arm",),
    ("run", rate per writer, seconds, settle), ("close",)."""
    loop = asyncio.get_running_loop()
    writers: list[Writer] = []
    readers: list[Peer] = []
    while True:
        command, *args = await loop.run_in_executor(None, pipe.recv)
        if command == "join":
            doc, ids, n, acks = args
            try:
                for client_id in ids:
                    w = Writer(spec, doc, client_id, acks)
                    await w.start()
                    writers.append(w)
                new = [Peer(spec.url(doc), spec.prefix(doc), spec.auth(doc)) for _ in range(n)]
                for i in range(0, n, 50):
                    await join_all(new[i : i + 50])
                readers += new
                pipe.send("ok")
            except Exception as exc:
                pipe.send(f"{type(exc).__name__}: {exc}")
        elif command == "arm":
            # Every process records before any writes: an update that reaches a reader
            # in a process not yet armed would count as lost.
            for r in readers:
                r.arrivals.clear()
                r.record = True
            for w in writers:
                w.sent.clear()
            pipe.send("ok")
        elif command == "run":
            rate, seconds, settle = args
            first = [w.peer.counted for w in writers]
            cpu0 = own_cpu()
            if writers:
                await asyncio.gather(*(w.run(rate, seconds) for w in writers))
            else:
                await asyncio.sleep(seconds)
            await asyncio.sleep(settle)
            sent: dict[tuple[int, int], float] = {}
            for w in writers:
                sent.update(w.sent)
            pipe.send(
                {
                    "sent": sent,
                    "arrivals": [a for r in readers for a in r.arrivals],
                    "acks": [
                        x for w, f in zip(writers, first, strict=True) for x in w.ack_latencies(f)
                    ],
                    "cpu": own_cpu() - cpu0,
                }
            )
        else:
            await asyncio.gather(*(w.peer.close() for w in writers), *(r.close() for r in readers))
            pipe.send("ok")
            return


class Generators:
    """`n` load generator processes for one target."""

    def __init__(self, spec: Spec, n: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[Any] = []
        self.procs: list[Any] = []
        for _ in range(n):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=generator_main, args=(spec, theirs), daemon=True)
            proc.start()
            self.pipes.append(mine)
            self.procs.append(proc)

    async def _ask(self, i: int, *command: Any) -> Any:
        loop = asyncio.get_running_loop()
        self.pipes[i].send(command)
        return await loop.run_in_executor(None, self.pipes[i].recv)

    async def join(self, doc: str, writer_ids: list[int], readers: int, acks: bool = False) -> None:
        n = len(self.pipes)
        answers = await asyncio.gather(
            *(
                self._ask(i, "join", doc, writer_ids[i::n], readers // n + (i < readers % n), acks)
                for i in range(n)
            )
        )
        for answer in answers:
            if answer != "ok":
                raise RuntimeError(f"generator: {answer}")

    async def run(self, rate: float, seconds: float, settle: float) -> Step:
        await asyncio.gather(*(self._ask(i, "arm") for i in range(len(self.pipes))))
        t0 = time.perf_counter()
        parts = await asyncio.gather(
            *(self._ask(i, "run", rate, seconds, settle) for i in range(len(self.pipes)))
        )
        wall = time.perf_counter() - t0
        sent: dict[tuple[int, int], float] = {}
        for part in parts:
            sent.update(part["sent"])
        lat = [
            (at - sent[key]) * 1000 for part in parts for key, at in part["arrivals"] if key in sent
        ]
        return Step(
            sent=len(sent),
            latencies=lat,
            acks=[a for part in parts for a in part["acks"]],
            wall=wall,
            generator_cpu=[100 * part["cpu"] / wall for part in parts],
        )

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(*(self._ask(i, "close") for i in range(len(self.pipes)))), 30
            )
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()


@dataclass
class Step:
    sent: int
    latencies: list[float]
    acks: list[float]
    wall: float
    generator_cpu: list[float]


async def join_all(peers: list[Peer], timeout: float = 60) -> None:
    await asyncio.gather(*(p.start() for p in peers))
    await asyncio.wait_for(asyncio.gather(*(p.synced.wait() for p in peers)), timeout)


GENERATORS = 4
SETTLE = 0.5
P99_LIMIT = 100.0


async def fanout(target: Target, readers_n: int, seconds: float) -> dict[str, Any]:
    doc = f"bench/fanout-{uuid.uuid4().hex[:8]}.txt"
    gens = Generators(target.spec, GENERATORS)
    try:
        await gens.join(doc, [1000], readers_n)
        usage = target.usage()
        cpu0, t0 = usage.cpu(), time.perf_counter()
        step = await gens.run(50, seconds, 1.0)
        cpu = (usage.cpu() - cpu0) / (time.perf_counter() - t0) * 100
        return {
            "p50": pct(step.latencies, 0.5),
            "p99": pct(step.latencies, 0.99),
            "cpu": cpu,
            "rss": usage.rss_mb(),
            "lost": step.sent * readers_n - len(step.latencies),
            "gen_cpu": max(step.generator_cpu),
        }
    finally:
        await gens.close()


def _ok(step: Step) -> bool:
    return pct(step.latencies, 0.99) <= P99_LIMIT


async def saturation(
    target: Target, seconds: float, start: int, step_size: int, top: int
) -> dict[str, Any]:
    """10 writers, 10 readers; offered updates/s rise by `step_size` (a fine ladder,
    not doubling) until p99 passes the limit, then the edge is bisected to 1/4 step."""
    doc = f"bench/sat-{uuid.uuid4().hex[:8]}.txt"
    gens = Generators(target.spec, GENERATORS)
    steps: list[dict[str, Any]] = []
    usage = target.usage()

    async def offer(total: int) -> bool:
        cpu0 = usage.cpu()
        step = await gens.run(total / 10, seconds, SETTLE)
        server_cpu = 100 * (usage.cpu() - cpu0) / step.wall
        steps.append(
            {
                "rate": total,
                "sent_per_s": step.sent / seconds,
                # Per second of the sending window: what arrives in the settle time
                # after it was sent in the window.
                "delivered_per_s": len(step.latencies) / seconds,
                "p99": pct(step.latencies, 0.99),
                "cpu": server_cpu,
                "gen_cpu": max(step.generator_cpu),
            }
        )
        print(f"    {target.name} sat {steps[-1]} ({benchlib.load()})", file=sys.stderr)
        return _ok(step)

    try:
        await gens.join(doc, [2000 + i for i in range(10)], 10)
        good, bad = 0, None
        rate = start
        while rate <= top:
            if not await offer(rate):
                bad = rate
                break
            good = rate
            rate += step_size
        if bad is not None:
            while bad - good > max(25, step_size // 4):
                mid = (good + bad) // 2
                if await offer(mid):
                    good = mid
                else:
                    bad = mid
        ok = [s for s in steps if s["p99"] <= P99_LIMIT]
        best = max(ok, key=lambda s: s["delivered_per_s"], default=None)
        return {"steps": steps, "best": best, "edge": good, "capped": bad is None}
    finally:
        await gens.close()


async def acks(target: Target, rate: int, seconds: float) -> dict[str, Any]:
    """collab with acknowledgements on, 10 writers at `rate` offered updates/s in all:
    send-to-ack (stored in PostgreSQL) and delivery latency."""
    doc = f"bench/acks-{uuid.uuid4().hex[:8]}.txt"
    gens = Generators(target.spec, GENERATORS)
    try:
        await gens.join(doc, [3000 + i for i in range(10)], 10, acks=True)
        step = await gens.run(rate / 10, seconds, SETTLE)
        return {
            "rate": rate,
            "ack_p50": pct(step.acks, 0.5),
            "ack_p99": pct(step.acks, 0.99),
            "acked": len(step.acks),
            "sent": step.sent,
            "p99": pct(step.latencies, 0.99),
        }
    finally:
        await gens.close()


async def join_storm(target: Target, clients: int, size: int) -> dict[str, float]:
    name = f"bench/storm-{uuid.uuid4().hex[:8]}.txt"
    path = target.files / name
    path.parent.mkdir(parents=True, exist_ok=True)
    words = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit"]
    rng = random.Random(7)
    text = " ".join(rng.choice(words) for _ in range(size // 6))[:size]
    path.write_text(text)
    spec = target.spec
    peers = [Peer(spec.url(name), spec.prefix(name), spec.auth(name)) for _ in range(clients)]
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


def _spawn(
    cmd: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    with open(log, "wb") as err:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=cwd)


_POSTGRES: dict[str, str] = {}


async def start_collab(root: Path, src: Path | None = None, name: str = "collab") -> Target:
    """collab's server; with `src`, the collab package of another checkout (an A/B run
    against an earlier commit: `git archive <commit> | tar -x -C DIR`)."""
    from collab.db import embedded, migrate
    from collab.db.pool import connect
    from collab.projects.store import create_project

    if "url" not in _POSTGRES:
        maintenance = embedded.start(root / "pgdata", delete_on_exit=True)
        _POSTGRES["url"] = await embedded.ensure_database(maintenance, "bench")
        await migrate.migrate(_POSTGRES["url"])
    url = _POSTGRES["url"]
    port = free_port()
    data = root / f"data-{uuid.uuid4().hex[:8]}"
    # Deep send queues: the slow-consumer close is not what this measures (the peers'
    # queues are unbounded).
    env = {
        **os.environ,
        "COLLAB_SECRET": "bench",
        "COLLAB_LOG_LEVEL": "warning",
        "COLLAB_SYNC_SEND_QUEUE": "1000000",
    }
    if src is not None:
        env["PYTHONPATH"] = str(src)
    proc = _spawn(
        [sys.executable, "-m", "collab.cli", "serve", "--data-dir", str(data),
         "--database-url", url, "--port", str(port)],
        env, root / f"{name}.log", cwd=src,
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
    spec = Spec(name, port, "collab", f"/yjs/{project}/", key)
    return Target(spec, proc, data / "projects" / str(project), root / "pgdata")


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
    return Target(Spec(name, port, "y-websocket"), proc, files)


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
    return Target(Spec("hocuspocus", port, "hocuspocus"), proc, files)


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
    seconds = 2.0 if args.quick else 4.0
    scenarios: list[tuple[str, Callable[[Target], Any]]] = [
        *[(f"fanout{n}", partial(fanout, readers_n=n, seconds=seconds)) for n in readers],
        (
            "sat",
            partial(
                saturation,
                seconds=seconds,
                start=args.ladder_start,
                step_size=args.ladder_step,
                top=args.ladder_top,
            ),
        ),
        ("storm", partial(join_storm, clients=200, size=1_000_000)),
    ]
    if args.scenarios:
        scenarios = [s for s in scenarios if s[0] in args.scenarios]
    print(
        f"event loop for every Python server and generator: {benchlib.loop_name()}; "
        f"{GENERATORS} generator processes; {benchlib.load()}",
        file=sys.stderr,
    )
    results: dict[str, dict[str, Any]] = {}
    loads: list[str] = [benchlib.load()]
    try:
        targets: list[tuple[str, Callable[[Path], Any]]] = [("collab", start_collab)]
        if args.base:
            base = Path(args.base)
            targets.append(("collab-base", partial(start_collab, src=base, name="collab-base")))
        if not args.only_collab:
            peers = [
                ("pycrdt-websocket", start_peer),
                ("pycrdt-websocket+sqlite", start_peer_sqlite),
            ]
            if not args.no_hocuspocus and hocuspocus_ready():
                peers.append(("hocuspocus", start_hocuspocus))
            targets += [p for p in peers if args.peers is None or p[0] in args.peers]
        for key, scenario in scenarios:
            # Targets alternate within a scenario, so that a change in the machine's load
            # falls on all of them; a fresh server for each, so no backlog carries over.
            for name, start in targets:
                results.setdefault(name, {})
                target = await start(root)
                try:
                    results[name][key] = await scenario(target)
                    if key == "sat" and name.startswith("collab"):
                        best = results[name][key]["best"]
                        if best is not None:
                            stop(target)
                            target = await start(root)
                            rate = int(best["rate"] / 2)
                            results[name]["acks"] = await acks(target, rate, seconds)
                except Exception as exc:
                    results[name][key] = {"error": f"{type(exc).__name__}: {exc}"[:80]}
                finally:
                    stop(target)
                print(f"{name} {key}: {_brief(results[name][key])}", file=sys.stderr)
                loads.append(benchlib.load())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_table(results, [n for n in readers if f"fanout{n}" in dict(scenarios)], loads)


def _brief(result: Any) -> Any:
    if isinstance(result, dict) and "steps" in result:
        return {k: v for k, v in result.items() if k != "steps"}
    return result


def print_table(results: dict[str, dict[str, Any]], readers: list[int], loads: list[str]) -> None:
    names = list(results)
    width = 50
    print()
    print(f"machine: {loads[0]} at the start, {loads[-1]} at the end")
    print("server CPU (% of one core) and RSS (MB): collab's include its PostgreSQL's processes")
    if readers:
        print("fan-out: 1 writer at 50 updates/s, N readers; updates never delivered (lost);")
        print("gen: the busiest load generator's CPU %")
        print(f"{'':>5} " + " | ".join(f"{n:^{width}}" for n in names))
        head = f"{'p50 ms':>8} {'p99 ms':>8} {'cpu %':>6} {'rss':>6} {'lost':>6} {'gen':>4}"
        print(f"{'N':>5} " + " | ".join(f"{head:>{width}}" for _ in names))
        for n in readers:
            row = []
            for name in names:
                r = results[name].get(f"fanout{n}", {"error": "not run"})
                if "error" in r:
                    row.append(f"{r['error'][:width]:>{width}}")
                    continue
                cell = (
                    f"{r['p50']:8.2f} {r['p99']:8.2f} {r['cpu']:6.0f} {r['rss']:6.0f} "
                    f"{r['lost']:6.0f} {r['gen_cpu']:4.0f}"
                )
                row.append(f"{cell:>{width}}")
            print(f"{n:>5} " + " | ".join(row))
        print()
    if any("sat" in results[n] for n in names):
        print("saturation: 10 writers, 10 readers; offered rate on a fine ladder, then the edge")
        print("bisected; best delivered updates/s while p99 <= 100 ms")
        print("[offered -> delivered/s (p99 ms, server cpu %, busiest generator cpu %)]")
        for name in names:
            sat = results[name].get("sat")
            if sat is None:
                continue
            if "error" in sat:
                print(f"  {name:>24}: {sat['error']}")
                continue
            best = sat["best"]["delivered_per_s"] if sat["best"] else 0.0
            capped = " (passed the top step: raise --ladder-top)" if sat["capped"] else ""
            tail = sorted(sat["steps"], key=lambda s: s["rate"])[-4:]
            detail = ", ".join(
                f"{s['rate']}->{s['delivered_per_s']:.0f} ({s['p99']:.0f}, {s['cpu']:.0f}, "
                f"{s['gen_cpu']:.0f})"
                for s in tail
            )
            print(f"  {name:>24}: {best:7.0f}{capped}   [{detail}]")
            ack = results[name].get("acks")
            if ack and "error" not in ack:
                print(
                    f"  {'':>24}  with ?acks=1 at {ack['rate']}/s: send-to-ack p50 "
                    f"{ack['ack_p50']:.1f} ms, p99 {ack['ack_p99']:.1f} ms "
                    f"({ack['acked']} of {ack['sent']} acked), delivery p99 {ack['p99']:.1f} ms"
                )
        print()
    if any("storm" in results[n] for n in names):
        print("join storm: 200 clients join a cold 1 MB document at once")
        for name in names:
            s = results[name].get("storm")
            if s is None:
                continue
            if "error" in s:
                print(f"  {name:>24}: {s['error']}")
                continue
            print(f"  {name:>24}: all synced in {s['seconds']:.2f} s, hung joins: {s['hung']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, at most 100 readers")
    parser.add_argument("--no-hocuspocus", action="store_true", help="leave Hocuspocus out")
    parser.add_argument("--only-collab", action="store_true", help="collab (and --base) only")
    parser.add_argument("--base", help="also run the collab package of this checkout (A/B)")
    parser.add_argument(
        "--peers",
        nargs="+",
        help="only these peers: pycrdt-websocket pycrdt-websocket+sqlite hocuspocus",
    )
    parser.add_argument(
        "--scenarios", nargs="+", help="fanout1 fanout10 fanout100 fanout500 sat storm"
    )
    parser.add_argument("--ladder-start", type=int, default=250)
    parser.add_argument("--ladder-step", type=int, default=250)
    parser.add_argument("--ladder-top", type=int, default=30000)
    args = parser.parse_args()
    if args.base:
        args.base = os.path.abspath(args.base)
    benchlib.run(run(args))


if __name__ == "__main__":
    main()
