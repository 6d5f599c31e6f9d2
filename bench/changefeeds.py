"""Changefeed benchmark: commit-to-client latency of table feeds under load, with the raw
asyncpg LISTEN/NOTIFY round trip on the same PostgreSQL as the baseline.

One server process (`collab serve`, a child process so that its CPU and RSS are its
own); N subscriptions spread over 1,000 WebSocket connections, each feed watching one
project; a writer updating random projects at a fixed rate straight through SQL. A
latency is an event's arrival minus the time taken just before its write was sent. The
--busy-rates are measured again with a CPU-bound process spinning on another core.
Server CPU and RSS include the embedded PostgreSQL's processes. Prints a table. Not a
test: nothing here asserts on time. --base DIR runs the collab package of another
checkout too (A/B: `git archive <commit> | tar -x -C DIR`).

    .venv/bin/python bench/changefeeds.py                 # 1k and 10k subs, 100/500/1000 w/s
    .venv/bin/python bench/changefeeds.py --subs 1000 --rates 100 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collab.auth.tokens import ApiKeys  # noqa: E402
from collab.db import embedded, migrate  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

CONNECTIONS = 1000
ACCOUNTS = 100
WORKERS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def setup_database(base_url: str) -> str:
    name = f"collab_bench_{os.getpid()}"
    admin = await asyncpg.connect(base_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = embedded.with_database(base_url, name)
    await migrate.migrate(url)
    return url


async def seed(url: str, projects: int) -> tuple[list[str], dict[str, list[str]]]:
    """ACCOUNTS accounts with API keys; `projects` projects owned round-robin."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    assert pool is not None
    keys = ApiKeys(pool)
    api_keys: list[str] = []
    owned: dict[str, list[str]] = {}
    members = []
    for i in range(ACCOUNTS):
        account_id = await pool.fetchval(
            "INSERT INTO accounts (email, name, password_hash) VALUES ($1, $2, 'x') "
            "RETURNING account_id",
            f"bench{i}@example.com",
            f"bench {i}",
        )
        key = (await keys.create(account_id, "bench"))["key"]
        api_keys.append(key)
        owned[key] = []
        for _ in range(i, projects, ACCOUNTS):
            pid = await pool.fetchval(
                "INSERT INTO projects (title) VALUES ('0') RETURNING project_id"
            )
            owned[key].append(str(pid))
            members.append((pid, account_id))
    await pool.executemany(
        "INSERT INTO project_users (project_id, account_id, role) VALUES ($1, $2, 'owner')", members
    )
    await pool.close()
    return api_keys, owned


def start_server(
    url: str,
    port: int,
    data_dir: Path,
    log_file: str | None,
    src: str | None = None,
    extra: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "COLLAB_DATABASE_URL": url,
        "COLLAB_PORT": str(port),
        "COLLAB_DATA_DIR": str(data_dir),
        "COLLAB_SECRET": "bench",
        "COLLAB_LOG_LEVEL": "info" if log_file else "warning",
        "COLLAB_TABLES_MAX_FEEDS_PER_ACCOUNT": "100000",
        "COLLAB_TABLES_MAX_FEEDS_PER_CONNECTION": "1000",
        "COLLAB_WS_SEND_QUEUE": "100000",
        **(extra or {}),
    }
    if src is not None:
        # An A/B run: the collab package of another checkout.
        env["PYTHONPATH"] = src
    exe = Path(sys.executable).parent / "collab"
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    return subprocess.Popen([str(exe), "serve"], env=env, stdout=out, stderr=out, cwd=src)


async def wait_ready(port: int) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                r = await client.get(f"http://127.0.0.1:{port}/healthz")
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("server did not start")


def subscriber_main(
    port: int, keys: list[str], owned: dict[str, list[str]], conns: range, per_conn: int, pipe: Any
) -> None:
    """A child process holding some of the connections, so that the client side gets
    its own CPU instead of sharing the writer's event loop. Commands over `pipe`:
    "collect" -> send {title: [receive times]} and clear."""
    benchlib.run(_subscriber(port, keys, owned, conns, per_conn, pipe))


async def _subscriber(
    port: int, keys: list[str], owned: dict[str, list[str]], conns: range, per_conn: int, pipe: Any
) -> None:
    received: dict[str, list[float]] = {}
    sem = asyncio.Semaphore(50)
    sockets = []

    async def read(ws: Any) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for text in ws:
                now = time.time()
                title = json.loads(text).get("new_val", {}).get("title")
                if title:
                    received.setdefault(title, []).append(now)

    async def one(i: int) -> None:
        key = keys[i % ACCOUNTS]
        async with sem:
            ws = await websockets.connect(
                f"ws://127.0.0.1:{port}/ws",
                additional_headers={"Authorization": f"Bearer {key}"},
                max_size=None,
            )
            mine = owned[key]
            start = (i // ACCOUNTS) * per_conn
            for n in range(per_conn):
                pid = mine[(start + n) % len(mine)]
                query = {"projects": [{"project_id": pid, "title": None}]}
                await ws.send(json.dumps({"id": n, "query": query, "changes": True}))
                while True:
                    answer = json.loads(await ws.recv())
                    if answer.get("id") == n:
                        assert "feed" in answer, answer
                        break
        sockets.append(ws)

    await asyncio.gather(*(one(i) for i in conns))
    readers = [asyncio.create_task(read(ws)) for ws in sockets]
    loop = asyncio.get_running_loop()
    pipe.send("ready")
    while True:
        command = await loop.run_in_executor(None, pipe.recv)
        if command == "collect":
            pipe.send(received)
            received = {}
        else:
            break
    for ws in sockets:
        await ws.close()
    for task in readers:
        task.cancel()


class Subscribers:
    """CONNECTIONS WebSockets over WORKERS child processes."""

    def __init__(self) -> None:
        self.pipes: list[Any] = []
        self.procs: list[Any] = []

    async def open(
        self, port: int, api_keys: list[str], owned: dict[str, list[str]], subs: int
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        per_conn = max(1, subs // CONNECTIONS)
        for w in range(WORKERS):
            mine, theirs = ctx.Pipe()
            conns = range(w, CONNECTIONS, WORKERS)
            proc = ctx.Process(
                target=subscriber_main, args=(port, api_keys, owned, conns, per_conn, theirs)
            )
            proc.start()
            self.pipes.append(mine)
            self.procs.append(proc)
        loop = asyncio.get_running_loop()
        for pipe in self.pipes:
            assert await loop.run_in_executor(None, pipe.recv) == "ready"

    async def collect(self) -> dict[str, list[float]]:
        loop = asyncio.get_running_loop()
        merged: dict[str, list[float]] = {}
        for pipe in self.pipes:
            pipe.send("collect")
            part = await loop.run_in_executor(None, pipe.recv)
            for title, times in part.items():
                merged.setdefault(title, []).extend(times)
        return merged

    async def close(self) -> None:
        for pipe in self.pipes:
            pipe.send("stop")
        for proc in self.procs:
            await asyncio.get_running_loop().run_in_executor(None, proc.join, 20)


async def write_load(
    url: str, projects: list[str], rate: int, seconds: float, warmup: float
) -> dict[str, float]:
    """Update random projects at `rate` per second; return title -> send time. The first
    `warmup` seconds run at the same rate unmeasured: new writer connections (each
    PostgreSQL backend compiles the trigger on its first write) and a load that has just
    started are not the steady state the rows report."""
    committed: dict[str, float] = {}
    pool = await asyncpg.create_pool(url, min_size=8, max_size=8)
    assert pool is not None
    seq = iter(range(10**9))

    async def one(title: str, pid: str, measured: bool) -> None:
        async with pool.acquire() as conn:
            # Timed just before the write is sent on its connection (not when it was
            # queued for one: the writer's own pool is not the server's latency), and
            # never after it returns: an event can arrive before execute() does.
            if measured:
                committed[title] = time.time()
            await conn.execute("UPDATE projects SET title = $1 WHERE project_id = $2", title, pid)

    tasks = []
    start = time.perf_counter()
    skipped = int(rate * warmup)
    for i in range(skipped + int(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        title = f"t{next(seq)}-{rate}"
        tasks.append(asyncio.create_task(one(title, random.choice(projects), i >= skipped)))
    await asyncio.gather(*tasks)
    await pool.close()
    return committed


def busy_main() -> None:
    """A CPU-bound neighbour for the "busy" rows: one core spinning."""
    while True:
        pass


async def baseline(url: str, rate: int, seconds: float) -> list[float]:
    """Raw asyncpg: NOTIFY from one connection, LISTEN on another; round trip in ms."""
    listener = await asyncpg.connect(url)
    sender = await asyncpg.connect(url)
    got: dict[str, float] = {}
    await listener.add_listener(
        "bench_baseline", lambda *a: got.__setitem__(a[3], time.perf_counter())
    )
    sent: dict[str, float] = {}
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        t = time.perf_counter()
        await sender.execute(f"NOTIFY bench_baseline, '{i}'")
        sent[str(i)] = t
    await asyncio.sleep(0.5)
    await listener.close()
    await sender.close()
    return [(got[k] - sent[k]) * 1000 for k in sent if k in got]


async def run(args: argparse.Namespace) -> None:
    base = os.environ.get("COLLAB_BENCH_DATABASE_URL")
    tmp = Path(tempfile.mkdtemp(prefix="collab-bench-"))
    try:
        await _run(args, base, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def _run(args: argparse.Namespace, base: str | None, tmp: Path) -> None:
    pgdata: Path | None = None
    if not base:
        pgdata = tmp / "pgdata"
        base = embedded.start(pgdata, delete_on_exit=True)
    print(
        "server CPU/RSS: collab "
        + ("and its PostgreSQL (all its processes, the writer's backends too)" if pgdata
           else "only (PostgreSQL is external: COLLAB_BENCH_DATABASE_URL)")
        + f"; {benchlib.load()}",
        flush=True,
    )  # fmt: skip
    servers: list[tuple[str, str | None, dict[str, str]]] = [("collab", None, {})]
    if args.base:
        servers.append(("collab-base", args.base, {}))
    if args.deflate_ab:
        # The same code with permessage-deflate on (the subscribers offer it).
        servers.append(("collab+deflate", None, {"COLLAB_WS_PER_MESSAGE_DEFLATE": "true"}))
    rows = []
    for subs in args.subs:
        for name, src, extra in servers:
            url = await setup_database(base)
            projects = max(1, subs // 10)
            api_keys, owned = await seed(url, projects)
            all_projects = [p for ps in owned.values() for p in ps]
            port = free_port()
            server = start_server(
                url, port, tmp / f"data-{name}-{subs}", args.server_log, src, extra
            )
            usage = benchlib.Usage([server.pid], pgdata)
            try:
                await wait_ready(port)
                subscribers = Subscribers()
                await subscribers.open(port, api_keys, owned, subs)
                await asyncio.sleep(1)
                plan = [(rate, False) for rate in args.rates]
                plan += [(rate, True) for rate in args.busy_rates]
                for rate, busy in plan:
                    neighbour = None
                    if busy:
                        neighbour = multiprocessing.get_context("spawn").Process(
                            target=busy_main, daemon=True
                        )
                        neighbour.start()
                    try:
                        rows.append(
                            await measure(
                                name, subs, projects, rate, busy, args, url, all_projects,
                                subscribers, usage,
                            )
                        )  # fmt: skip
                    finally:
                        if neighbour is not None:
                            neighbour.kill()
                            neighbour.join()
                    print_row(rows[-1], header=len(rows) == 1)
                await subscribers.close()
            finally:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(20)
                except subprocess.TimeoutExpired:
                    server.kill()
    print()
    print(
        "| server | subs | writes/s | busy core | events (expected) | p50 ms | p99 ms | max ms "
        "| server CPU % | server RSS MB | raw NOTIFY p50 / p99 ms | load avg |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['name']} | {r['subs']} | {r['rate']} | {'yes' if r['busy'] else 'no'} "
            f"| {r['events']} ({r['expected']}) | {r['p50']:.1f} | "
            f"{r['p99']:.1f} | {r['max']:.1f} | {r['cpu']:.0f} | {r['rss']:.0f} | "
            f"{r['raw_p50']:.2f} / {r['raw_p99']:.2f} | {r['load']:.1f} |"
        )


async def measure(
    name: str,
    subs: int,
    projects: int,
    rate: int,
    busy: bool,
    args: argparse.Namespace,
    url: str,
    all_projects: list[str],
    subscribers: Subscribers,
    usage: benchlib.Usage,
) -> dict[str, Any]:
    await subscribers.collect()
    cpu0 = usage.cpu()
    own = benchlib.Usage(usage.pids)  # the server's process alone, without PostgreSQL
    own0 = own.cpu()
    workers = [psutil.Process(p.pid) for p in subscribers.procs]
    wcpu0 = sum(w.cpu_times().user + w.cpu_times().system for w in workers)
    mcpu0 = benchlib.own_cpu()
    t0 = time.perf_counter()
    sent = await write_load(url, all_projects, rate, args.seconds, args.warmup)
    await asyncio.sleep(2)
    wall = time.perf_counter() - t0
    cpu = usage.cpu() - cpu0
    own_cpu = own.cpu() - own0
    wcpu = sum(w.cpu_times().user + w.cpu_times().system for w in workers) - wcpu0
    mcpu = benchlib.own_cpu() - mcpu0
    print(
        f"  server CPU: its process {100 * own_cpu / wall:.0f}%, PostgreSQL "
        f"{100 * (cpu - own_cpu) / wall:.0f}%; client CPU: subscribers "
        f"{100 * wcpu / wall:.0f}% over {WORKERS} processes, writer {100 * mcpu / wall:.0f}%, "
        f"{benchlib.load()}",
        flush=True,
    )
    received = await subscribers.collect()
    latencies = [
        (t - sent[title]) * 1000
        for title, times in received.items()
        if title in sent
        for t in times
    ]
    expected = len(sent) * max(1, subs // projects)
    if args.timeline:
        timeline(sent, received)
    raw = await baseline(url, rate, min(args.seconds, 3))
    return {
        "name": name,
        "subs": subs,
        "rate": rate,
        "busy": busy,
        "events": len(latencies),
        "expected": expected,
        "p50": pct(latencies, 0.5),
        "p99": pct(latencies, 0.99),
        "max": max(latencies) if latencies else float("nan"),
        "negative": sum(1 for x in latencies if x < 0),
        "cpu": 100 * cpu / wall,
        "rss": usage.rss_mb(),
        "raw_p50": pct(raw, 0.5),
        "raw_p99": pct(raw, 0.99),
        "load": os.getloadavg()[0],
    }


def timeline(sent: dict[str, float], received: dict[str, list[float]]) -> None:
    """p50 / p99 / max of the events by the half second their write was sent in: a stall
    shows as a window of its own, a server that cannot keep up as a rising line."""
    start = min(sent.values())
    windows: dict[int, list[float]] = {}
    for title, times in received.items():
        if title in sent:
            w = int((sent[title] - start) * 2)
            windows.setdefault(w, []).extend((t - sent[title]) * 1000 for t in times)
    print("    window s   events    p50    p99     max", flush=True)
    for w in sorted(windows):
        lat = windows[w]
        print(
            f"    {w / 2:8.1f} {len(lat):8} {pct(lat, 0.5):6.1f} {pct(lat, 0.99):6.1f} "
            f"{max(lat):7.1f}",
            flush=True,
        )


def print_row(r: dict[str, Any], header: bool) -> None:
    if header:
        print(
            f"{'server':>12} {'':>4} {'subs':>6} {'w/s':>5} {'events':>8} {'p50':>7} {'p99':>7} {'max':>7} {'cpu%':>5} {'rssMB':>6} {'raw50':>6}"
        )
    print(
        f"{r['name']:>12} {'busy' if r['busy'] else '':>4} "
        f"{r['subs']:>6} {r['rate']:>5} {r['events']:>8} {r['p50']:>7.1f} {r['p99']:>7.1f} "
        f"{r['max']:>7.1f} {r['cpu']:>5.0f} {r['rss']:>6.0f} {r['raw_p50']:>6.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subs", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--rates", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured seconds first")
    parser.add_argument(
        "--busy-rates",
        type=int,
        nargs="*",
        default=[1000],
        help="rates measured again with a CPU-bound process spinning on another core",
    )
    parser.add_argument("--server-log", help="append the server's info log to this file")
    parser.add_argument(
        "--timeline", action="store_true", help="print each half second's latencies too"
    )
    parser.add_argument("--base", help="also run the collab package of this checkout (A/B)")
    parser.add_argument(
        "--deflate-ab", action="store_true", help="also run collab with permessage-deflate on"
    )
    args = parser.parse_args()
    if args.base:
        args.base = os.path.abspath(args.base)
    benchlib.run(run(args))


if __name__ == "__main__":
    main()
