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


def abstract_socket(t: dict[str, Any]) -> bool:
    """An abstract Unix socket the server listens on (no file: only a network
    namespace keeps it apart)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect("\0" + t["abstract_socket"])
            return True
        except OSError:
            return False


def other_pty(t: dict[str, Any]) -> bool:
    """Another project's terminal: its pty by name, or through its shell's /proc."""
    for path in (t["other_pty"], f"/proc/{t['other_pty_pid']}/fd/0"):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            os.write(fd, b"")
            return True
        except OSError:
            continue
        finally:
            os.close(fd)
    return False


def host_devices(t: dict[str, Any]) -> bool:
    """Any device of the host beyond the harmless few (/dev/kmsg, disks, /dev/kvm)."""
    harmless = {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "console"}
    for name in t["host_devices"]:
        if name in harmless:
            continue
        try:
            os.close(os.open(os.path.join("/dev", name), os.O_RDONLY | os.O_NONBLOCK))
            return True
        except OSError:
            continue
    return False


def server_environment(t: dict[str, Any]) -> bool:
    """A variable of the server's environment, in the sandbox's own."""
    return any(t["env_var"] in value for value in os.environ.values())


def privileges_gainable(t: dict[str, Any]) -> bool:
    """no_new_privs off: a setuid program (su, mount, passwd) would run with its owner's
    rights."""
    status = _read("/proc/self/status") or ""
    return "NoNewPrivs:\t0" in status


def user_namespace(t: dict[str, Any]) -> bool:
    """A new user namespace (root in it) with a mount namespace of its own: its
    capabilities cover only what the sandbox already sees, the sandbox's mounts are
    locked (no unmounting to reveal what lies below), so nothing outside is reached."""
    import ctypes

    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.unshare(0x10000000 | 0x00020000)  # CLONE_NEWUSER | CLONE_NEWNS
            libc.umount2(b"/home/user", 2)  # MNT_DETACH
            libc.umount2(b"/proc", 2)
            if (
                secret(t)
                or data_dir_listing(t)
                or project_listing(t)
                or other_project_file(t)
                or server_proc(t)
            ):
                code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 1


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
    abstract_socket,
    other_pty,
    host_devices,
    server_environment,
    privileges_gainable,
    user_namespace,
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
