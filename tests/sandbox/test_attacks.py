"""Attacks beyond the escape suite, from real kernels in a real sandbox (`bwrap`): the
terminal the server was started from, which a kernel inherits as its stdout and stderr
unless the server redirects them; the kernel's connection file, which the server
rewrites as root on a restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_user, ws_connect
from tests.kernels.conftest import wait_for
from tests.sandbox.conftest import (
    new_project,
    project_dir,
    run_in_kernel,
    sandbox_server,
    wait_file,
)

pytestmark = pytest.mark.timeout(300)


@contextlib.contextmanager
def _server_on_a_terminal() -> Iterator[int]:
    """The server's stdout and stderr on a pty, as when an admin runs `collab serve`
    in a shell; yields the pty's master (the admin's side)."""
    master, slave = os.openpty()
    saved = [os.dup(1), os.dup(2)]
    os.dup2(slave, 1)
    os.dup2(slave, 2)
    os.close(slave)
    os.set_blocking(master, False)
    try:
        yield master
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _drain(master: int, seen: bytearray) -> None:
    with contextlib.suppress(BlockingIOError, OSError):
        while chunk := os.read(master, 65536):
            seen.extend(chunk)


# The kernel looks for a terminal on any descriptor it holds (ipykernel keeps a copy of
# the original stdout and stderr after capturing them) and writes to it (an admin's
# shell would show it; reading would steal what the admin types). The marker is built in
# the kernel, so the server's own logging of the cell cannot put it on the terminal.
TTY_CELL = """
import json, os
marker = bytes.fromhex({hex!r})[::-1]
found = []
for fd in sorted(int(n) for n in os.listdir('/proc/self/fd')):
    try:
        if os.isatty(fd):
            os.write(fd, marker)
            found.append(fd)
    except OSError:
        pass
open('tty.json', 'w').write(json.dumps({{"ttys": found}}))
"""


async def test_a_kernel_cannot_write_to_the_terminal_the_server_runs_on() -> None:
    marker = b"KERNEL-ON-ADMIN-TTY-" + secrets.token_hex(6).encode()
    seen = bytearray()
    async with sandbox_server("bwrap") as server:
        owner = await make_user(server)
        project = await new_project(server, owner, "P")
        with _server_on_a_terminal() as master:

            async def drain() -> None:
                # The server's own log lines go to the pty too: keep it from filling.
                while True:
                    _drain(master, seen)
                    await asyncio.sleep(0.05)

            drainer = asyncio.create_task(drain())
            try:
                code = TTY_CELL.format(hex=marker[::-1].hex())
                await run_in_kernel(server, owner, project, code)
                result = await wait_file(project_dir(server, project) / "tty.json")
            finally:
                drainer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await drainer
                _drain(master, seen)
    assert marker not in bytes(seen)
    assert result == '{"ttys": []}'


# The kernel swaps its connection file for a link to a host file, then asks for a
# restart: the server (root) rewrites or re-owns the connection file on restart, and
# must not do so through the link.
SWAP_CELL = """
import json, os
from ipykernel.connect import get_connection_file
path = get_connection_file()
try:
    os.symlink({target!r}, path + ".link")
    os.rename(path + ".link", path)
    swapped = True
except OSError as e:
    swapped = repr(e)
open('swap.json', 'w').write(json.dumps({{"swapped": swapped}}))
"""


async def test_a_kernels_connection_file_swapped_for_a_link_is_not_followed_on_restart(
    tmp_path: Path,
) -> None:
    target = tmp_path / "server-file"
    target.write_text("root's\n")
    target.chmod(0o600)
    async with sandbox_server("bwrap") as server:
        owner = await make_user(server)
        project = await new_project(server, owner, "P")
        code = SWAP_CELL.format(target=str(target))
        await run_in_kernel(server, owner, project, code)
        await wait_file(project_dir(server, project) / "swap.json")
        async with ws_connect(server, owner.key) as ws:
            args = {"project_id": str(project), "path": "run.ipynb"}
            answer = await ws.call("kernel.restart", args)
        st = target.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o600)
        assert target.read_text() == "root's\n"
        assert "result" in answer, answer
        kernels = server.services.extra["kernels"]
        session = kernels.get(project, "run.ipynb")
        await wait_for(lambda: session.status == "idle", what="restarted kernel idle")
