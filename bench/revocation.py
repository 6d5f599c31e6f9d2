"""How long an open connection outlives the revocation of its access ("within about a
second", docs/protocol.md): a member removed from a project (their /yjs document closes
with 4403) and an API key revoked (its /ws closes with 4401), on the server process that
took the request and on a second, real, server process sharing the database. Baseline in
the same run: an ordinary changefeed event (a project renamed, seen on a member's feed)
through the same processes, the path a revocation travels. Prints a table.

    .venv/bin/python bench/revocation.py [--rounds 30]

Each round times from just before the request is sent to the close the connection
receives; rounds run one at a time, so the figures are latencies, not throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import websockets

from bench.benchlib import load, pct
from collab.config import Settings
from tests.conftest import make_user, serve, ws_connect
from tests.sync.processes import ServerProcess, free_port
from tests.sync.yclient import connect
from tests.tables.conftest import add_member, remove_member


async def _closed(conn: Any) -> int:
    try:
        while True:
            await asyncio.wait_for(conn.recv(), 30)
    except websockets.ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else -1


async def _removal(served: Any, holder: Any, owner_key: str, pid: str) -> float:
    member = await make_user(served)
    async with ws_connect(served, owner_key) as owner_ws:
        await add_member(owner_ws, pid, member.account_id)
        async with connect(holder, pid, "doc.md", member.key) as doc:
            await asyncio.wait_for(doc.synced.wait(), 30)
            start = time.perf_counter()
            await remove_member(owner_ws, pid, member.account_id)
            code = await asyncio.wait_for(asyncio.shield(doc.closed), 30)
            assert code == 4403, code
            return (time.perf_counter() - start) * 1000


async def _key_revoked(served: Any, holder: Any, owner_key: str, pid: str) -> float:
    member = await make_user(served)
    async with served.client(headers={"Authorization": f"Bearer {member.key}"}) as http:
        spare = (await http.post("/api/auth/keys", json={})).json()
        async with ws_connect(holder, spare["key"]) as ws:
            assert (await ws.call("ping"))["result"] == "pong"
            start = time.perf_counter()
            r = await http.delete(f"/api/auth/keys/{spare['key_id']}")
            assert r.status_code == 200, r.text
            code = await _closed(ws.conn)
            assert code == 4401, code
            return (time.perf_counter() - start) * 1000


async def _feed_event(served: Any, holder: Any, owner_key: str, pid: str) -> float:
    async with ws_connect(served, owner_key) as owner_ws, ws_connect(holder, owner_key) as feed:
        answer = await feed.request(
            {"query": {"projects": [{"project_id": pid, "title": None}]}, "changes": True}
        )
        assert "result" in answer, answer
        title = f"renamed {time.perf_counter_ns()}"
        start = time.perf_counter()
        await owner_ws.request({"query": {"projects": {"project_id": pid, "title": title}}})
        while True:
            event = await feed.recv(30)
            if title in str(event):
                return (time.perf_counter() - start) * 1000


async def main(rounds: int) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="collab-bench-revoke-"))
    os.chmod(data_dir, 0o755)
    settings = Settings(
        data_dir=data_dir, database_url=None, secret="test-secret", sandbox="none",
        sandbox_allow_none=True,
    )  # fmt: skip
    try:
        async with serve(settings) as served:
            url = served.services.database_url
            # Its own data dir (one server per data dir), the same database.
            other_dir = data_dir / "other"
            other_dir.mkdir()
            other = ServerProcess(other_dir, url, free_port(), data_dir / "other.log")
            await other.start()
            try:
                owner = await make_user(served)
                async with ws_connect(served, owner.key) as ws:
                    made = await ws.request({"query": {"projects": {"title": "bench"}}})
                    pid = made["result"]["projects"]["project_id"]
                cases: list[tuple[str, Callable[..., Awaitable[float]]]] = [
                    ("changefeed event (baseline)", _feed_event),
                    ("member removed: /yjs 4403", _removal),
                    ("API key revoked: /ws 4401", _key_revoked),
                ]
                rows = []
                for name, case in cases:
                    for where, holder in (("same process", served), ("other process", other)):
                        samples = [
                            await case(served, holder, owner.key, pid) for _ in range(rounds)
                        ]
                        rows.append((name, where, samples))
            finally:
                other.stop()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    print(load())
    print(f"{rounds} rounds each, one at a time; ms from the request sent to the close seen")
    print("| what | connection on | p50 ms | p99 ms | max ms |")
    print("|---|---|---:|---:|---:|")
    for name, where, samples in rows:
        print(
            f"| {name} | {where} | {statistics.median(samples):.1f} "
            f"| {pct(samples, 0.99):.1f} | {max(samples):.1f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    asyncio.run(main(parser.parse_args().rounds))
