"""From a kernel cell and from a terminal in project P, every escape the sandbox closes is
attempted: another project's files and listing, the data dir and secret, the database
socket (without and with a password), 127.0.0.1:5432 and every port the host listens on,
the server's /proc and environment, another kernel's connection file, signals to the
server, writing outside P; an abstract Unix socket of the server, another project's
terminal (its pty), the host's devices, the server's environment, setuid programs
(no_new_privs) and a user namespace of one's own. With the sandbox every attempt fails; with `sandbox = "none"`
every one succeeds, which shows the attempts are real."""

from __future__ import annotations

import json
import os
import secrets
import socket
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import pytest

from tests.conftest import Served, User
from tests.kernels.conftest import wait_for
from tests.sandbox.conftest import (
    PYTHON,
    install_probe,
    new_project,
    project_dir,
    run_in_kernel,
    run_in_terminal,
    wait_file,
)

pytestmark = pytest.mark.timeout(300)


def _listening_ports() -> list[int]:
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(ports)


def _host_ip() -> str:
    try:
        return str(socket.gethostbyname(socket.gethostname()))
    except OSError:
        return "127.0.0.1"


def _env_marker() -> str:
    """One variable of the server's own environment, as /proc/<pid>/environ shows it."""
    entries = Path("/proc/self/environ").read_bytes().split(b"\0")
    return max((e.decode(errors="replace") for e in entries if b"=" in e), key=len)


def _host_devices() -> list[str]:
    return sorted(
        entry.name
        for entry in os.scandir("/dev")
        if not entry.is_dir(follow_symlinks=False) and not entry.is_symlink()
    )


async def _other_terminal(server: Served, owner: User, other: UUID) -> tuple[str, int]:
    """A shell of the other project: (its pty's name, the pid holding it)."""
    await run_in_terminal(server, owner, other, "echo ready")
    terminals = server.services.extra["terminals"]
    term = await wait_for(lambda: terminals.get(other, "t.term"), what="other terminal")
    assert term.pid is not None
    return os.readlink(f"/proc/{term.pid}/fd/0"), term.pid


async def _targets(
    server: Served, owner: User, other: UUID, abstract: str, env_var: str
) -> dict[str, Any]:
    s = server.services.settings
    marker = secrets.token_hex(8)
    (project_dir(server, other) / "secret.txt").write_text(marker)
    # A kernel of the other project, for its connection file.
    await run_in_kernel(server, owner, other, "x = 1", path="other.ipynb")
    kernels = server.services.extra["kernels"]
    session = await wait_for(lambda: kernels.get(other, "other.ipynb"), what="other kernel")
    await wait_for(lambda: session.status == "idle", what="other kernel idle")
    connection_file = session._backend._km.connection_file
    socket_dir = parse_qs(urlsplit(server.services.database_url).query)["host"][0]
    tag = secrets.token_hex(4)
    pty, pty_pid = await _other_terminal(server, owner, other)
    return {
        "other_id": str(other),
        "other_file": str(project_dir(server, other) / "secret.txt"),
        "other_marker": marker,
        "projects_dir": str(s.projects_dir),
        "data_dir": str(s.data_dir),
        "secret": (s.data_dir / "secret").read_text().strip(),
        "db_socket_dir": socket_dir,
        "ports": _listening_ports(),
        "host_ip": _host_ip(),
        "server_pid": os.getpid(),
        "env_marker": _env_marker(),
        "other_connection_file": connection_file,
        "write_targets": [
            str(project_dir(server, other) / f"escaped-{tag}"),
            str(s.data_dir / f"escaped-{tag}"),
            str(s.projects_dir / f"escaped-{tag}"),
            f"/tmp/collab-escaped-{tag}",
        ],
        "abstract_socket": abstract,
        "other_pty": pty,
        "other_pty_pid": pty_pid,
        "host_devices": _host_devices(),
        "env_var": env_var,
    }


def _outcome(raw: str, targets: dict[str, Any]) -> dict[str, bool]:
    result: dict[str, bool] = json.loads(raw)
    # A write "succeeds" inside a sandbox's private /tmp too: what counts is the host.
    written = [Path(p) for p in targets["write_targets"] if Path(p).exists()]
    result["write_outside"] = bool(written)
    for path in written:
        path.unlink()
    return result


@pytest.mark.parametrize("origin", ["kernel", "terminal"])
async def test_every_escape_fails_in_the_sandbox_and_succeeds_without(
    sandboxed: Served, owner: User, mode: str, origin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = await new_project(sandboxed, owner, "P")
    other = await new_project(sandboxed, owner, "Q")
    env_var = "server-only-" + secrets.token_hex(8)
    monkeypatch.setenv("COLLAB_PROBE_SERVER_ONLY", env_var)  # stripped even without sandbox
    monkeypatch.setenv("SERVER_ONLY_VARIABLE", env_var)
    abstract = "collab-probe-" + secrets.token_hex(8)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + abstract)
    listener.listen(8)
    try:
        targets = await _targets(sandboxed, owner, other, abstract, env_var)
        result_file = install_probe(sandboxed, project, targets)
        if origin == "kernel":
            code = "import runpy; runpy.run_path('probe.py', run_name='__main__')"
            await run_in_kernel(sandboxed, owner, project, code)
        else:
            await run_in_terminal(sandboxed, owner, project, f"{PYTHON} probe.py")
        result = _outcome(await wait_file(result_file), targets)
    finally:
        listener.close()
    assert len(result) == 19, result
    if mode == "bwrap":
        assert [name for name, escaped in result.items() if escaped] == [], result
    else:
        # Without a sandbox everything is reachable; only the database's socket without a
        # password is refused, by the embedded cluster's SCRAM authentication (the same
        # attempt reaches the host's trusting PostgreSQL: db_tcp).
        assert [name for name, escaped in result.items() if not escaped] == ["db_socket"]
