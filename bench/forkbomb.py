"""/healthz latency while a project's terminal runs a fork bomb in its sandbox, against
the same server quiet moments before (the baseline, same run). Prints a table.

    .venv/bin/python bench/forkbomb.py [--seconds 10] [--pids 64]

Runs as root (the process limit is a cgroup). The server runs in this process on its
own embedded PostgreSQL (the sandbox tests' fixture); the probe is one HTTP client
asking /healthz back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import make_user
from tests.sandbox.conftest import new_project, run_in_terminal, sandbox_server
from tests.terminals.conftest import term_client


async def _probe(server: object, seconds: float) -> list[float]:
    samples: list[float] = []
    async with server.client() as client:  # type: ignore[attr-defined]
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            r = await client.get("/healthz")
            samples.append((time.perf_counter() - start) * 1000)
            assert r.status_code == 200, r.text
    return samples


def _row(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"| {name} | {len(samples)} | {statistics.median(ordered):.1f} | {p99:.1f} "
        f"| {ordered[-1]:.1f} |"
    )


def _refused_forks(cgroup: Path) -> int:
    for line in (cgroup / "pids.events").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "max":
            return int(value)
    return 0


async def main(seconds: float, pids: int) -> None:
    if os.geteuid() != 0:
        sys.exit("run as root: the process limit is a cgroup")
    async with sandbox_server("bwrap", sandbox_pids=pids) as server:
        user = await make_user(server)
        bomb = await new_project(server, user, "bomb")
        cgroup = server.services.extra["sandbox"].cgroups.bases["pids"][1] / str(bomb)
        quiet = await _probe(server, seconds)
        await run_in_terminal(server, user, bomb, "b(){ b|b& }; b")
        for _ in range(1200):  # the bomb reaches its limit within a minute
            if _refused_forks(cgroup) > 0:
                break
            await asyncio.sleep(0.05)
        refused_before = _refused_forks(cgroup)
        during = await _probe(server, seconds)
        refused = _refused_forks(cgroup) - refused_before
        live = int((cgroup / "pids.current").read_text())
        async with term_client(server, user.key) as term:
            await term.call("terminal.kill", {"project_id": str(bomb), "path": "t.term"})
    load = os.getloadavg()
    print(f"machine load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} cores")
    print(
        f"fork bomb limit {pids} processes: {refused_before} forks refused before probing, "
        f"{refused} while probing, {live} processes at the end"
    )
    print("| /healthz | probes | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    print(_row("quiet (baseline)", quiet))
    print(_row("fork bomb running", during))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--pids", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.pids))
