"""Escape attempts, run inside a project (from a kernel cell or a terminal). Each
attempt answers True when it reached something outside the project. Reads the targets
from probe.json beside it and prints (and writes to probe-result.json) the answers.

Plain standard library and asyncpg (in the server's virtualenv, which sandboxes see)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any


def _read(path: str) -> str | None:
    try:
        with open(path, errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def other_project_file(t: dict[str, Any]) -> bool:
    for path in (t["other_file"], os.path.join("..", t["other_id"], "secret.txt")):
        text = _read(path)
        if text and t["other_marker"] in text:
            return True
    return False


def project_listing(t: dict[str, Any]) -> bool:
    for folder in (t["projects_dir"], ".."):
        try:
            if t["other_id"] in os.listdir(folder):
                return True
        except OSError:
            continue
    return False


def data_dir_listing(t: dict[str, Any]) -> bool:
    try:
        return "secret" in os.listdir(t["data_dir"])
    except OSError:
        return False


def secret(t: dict[str, Any]) -> bool:
    for path in (os.path.join(t["data_dir"], "secret"), "../../secret"):
        text = _read(path)
        if text and t["secret"] in text:
            return True
    return False


def _pg(**kwargs: Any) -> bool:
    """Connect and run a query, in a thread with its own loop (a kernel has one)."""
    import asyncpg

    answer: list[bool] = [False]

    def run() -> None:
        async def go() -> None:
            conn = await asyncio.wait_for(asyncpg.connect(timeout=5, **kwargs), 8)
            try:
                answer[0] = await conn.fetchval("SELECT count(*) FROM pg_roles") is not None
            finally:
                await conn.close()

        try:
            asyncio.run(go())
        except BaseException:
            answer[0] = False

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(20)
    return answer[0]


def db_socket(t: dict[str, Any]) -> bool:
    return _pg(host=t["db_socket_dir"], user="postgres", database="postgres")


def db_socket_password(t: dict[str, Any]) -> bool:
    """With a guessed password, and with the password file if it can be read."""
    guesses = ["postgres", "collab", "password"]
    stolen = _read(os.path.join(t["data_dir"], "postgres-password"))
    if stolen:
        guesses.insert(0, stolen.strip())
    return any(
        _pg(host=t["db_socket_dir"], user="postgres", database="postgres", password=p)
        for p in guesses
    )


def db_tcp(t: dict[str, Any]) -> bool:
    return _pg(host="127.0.0.1", port=5432, user="postgres", database="postgres")


def listening_ports(t: dict[str, Any]) -> bool:
    """Any TCP port the host listens on (the server, PostgreSQL, anything)."""
    for port in t["ports"]:
        for host in ("127.0.0.1", t.get("host_ip") or "127.0.0.1"):
            try:
                with socket.create_connection((host, port), timeout=2):
                    return True
            except OSError:
                continue
    return False


def server_proc(t: dict[str, Any]) -> bool:
    environ = _read(f"/proc/{t['server_pid']}/environ")
    return bool(environ and t["env_marker"] in environ)


def server_cmdline(t: dict[str, Any]) -> bool:
    cmdline = _read(f"/proc/{t['server_pid']}/cmdline")
    return bool(cmdline and "python" in cmdline)


def other_connection_file(t: dict[str, Any]) -> bool:
    text = _read(t["other_connection_file"])
    return bool(text and '"key"' in text)


def signal_server(t: dict[str, Any]) -> bool:
    try:
        os.kill(t["server_pid"], 0)  # the permission check of kill(2), harmless
        return True
    except OSError:
        return False


def write_outside(t: dict[str, Any]) -> bool:
    wrote = False
    for path in t["write_targets"]:
        try:
            with open(path, "w") as fh:
                fh.write("escaped")
            wrote = True
        except OSError:
            continue
    return wrote


PROBES = [
    other_project_file,
    project_listing,
    data_dir_listing,
    secret,
    db_socket,
    db_socket_password,
    db_tcp,
    listening_ports,
    server_proc,
    server_cmdline,
    other_connection_file,
    signal_server,
    write_outside,
]


def main() -> dict[str, bool]:
    here = Path(__file__).resolve().parent
    targets = json.loads((here / "probe.json").read_text())
    result = {probe.__name__: bool(probe(targets)) for probe in PROBES}
    (here / "probe-result.json").write_text(json.dumps(result))
    print("PROBE-RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
