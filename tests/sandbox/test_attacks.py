"""Attacks beyond the escape suite, from real kernels in a real sandbox (`bwrap`): the
terminal the server was started from, which a kernel inherits as its stdout and stderr
unless the server redirects them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator

import pytest

from tests.conftest import make_user
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
