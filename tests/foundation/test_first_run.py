"""The command line as a first-time user meets it: one server per embedded data dir, a
bad database URL or a busy port is one clear line before anything starts, and every
command says which data dir and database it uses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.foundation.test_serve import _free_port, _wait_healthy


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLAB_")}
    # As on a server, in a container or under sudo: platformdirs warned on every command.
    env.pop("XDG_RUNTIME_DIR", None)
    return env


async def _cli(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "collab.cli", *args, env=_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


async def _serve(data_dir: Path, port: int, *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "collab.cli", "serve", "--data-dir", str(data_dir),
        "--port", str(port), *extra, env=_env(),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


def _stop_cluster(data_dir: Path) -> None:
    """A server killed with SIGKILL leaves its embedded PostgreSQL running (the next
    start reuses it); the test stops what it started."""
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and str(data_dir / "postgres") in cmdline:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
                proc.wait(20)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: other pytest runs on the machine reset its base to
    # 0700, which the embedded cluster's own user then cannot traverse.
    root = Path(tempfile.mkdtemp(prefix="collab-first-run-"))
    path = root / "data"
    yield path
    _stop_cluster(path)
    shutil.rmtree(root, ignore_errors=True)


def _one_clear_line(stderr: str) -> str:
    """The error line; nothing else but the opening line saying what the command uses."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


async def test_a_second_server_on_an_embedded_data_dir_is_refused_and_a_killed_ones_is_not(
    data_dir,
) -> None:
    port, other = _free_port(), _free_port()
    first = await _serve(data_dir, port)
    second = None
    try:
        await _wait_healthy(port, first)
        second = await _serve(data_dir, other)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(second.wait(), 60)
        assert second.returncode not in (None, 0), "the second server started"
        line = _one_clear_line((await second.stderr.read()).decode())
        assert "another collab server" in line and str(data_dir) in line, line
        assert f"pid {first.pid}" in line, line
        # The first one serves on, untouched.
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
        # A server killed outright leaves no lock behind that blocks the next start.
        first.send_signal(signal.SIGKILL)
        await first.wait()
        first = await _serve(data_dir, other)
        await _wait_healthy(other, first)
    finally:
        for proc in (second, first):
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 30)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://ada:hunter2@db.example/app", "not a PostgreSQL URL"),
        ("postgresql://ada:hunter2@127.0.0.1:1/app", "cannot connect to the database"),
        ("postgresql://ada:hunter2@127.0.0.1:notaport/app", "not valid"),
    ],
)
async def test_a_bad_database_url_is_one_clear_line_and_creates_nothing(
    tmp_path, url, says
) -> None:
    data_dir = tmp_path / "data"
    for command in (
        ["serve", "--port", str(_free_port())],
        ["migrate"],
        ["user", "create", "--email", "a@example.com", "--password", "a long password"],
        ["backup", str(tmp_path / "b.tar")],
    ):
        code, _, stderr = await _cli(
            *command, "--data-dir", str(data_dir), "--database-url", url, timeout=60
        )
        assert code != 0, (command, stderr)
        line = _one_clear_line(stderr)
        assert says in line, (command, line)
        assert "hunter2" not in stderr, (command, stderr)
        assert "ada@" in line, line  # the URL, less its password
        assert not data_dir.exists(), command
        assert not (tmp_path / "b.tar").exists()


async def test_a_port_in_use_is_refused_before_the_database_starts(data_dir) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, stderr = await _cli(
            "serve", "--data-dir", str(data_dir), "--port", str(port), timeout=60
        )
    assert code != 0
    line = _one_clear_line(stderr)
    assert f"127.0.0.1:{port}" in line and "--port" in line, line
    assert "server ready" not in stderr and "migration" not in stderr
    # Nothing was started or written: no embedded cluster, no secret, no projects.
    assert not data_dir.exists()


async def test_every_command_says_which_data_dir_and_database_it_uses(
    data_dir, db_url, tmp_path
) -> None:
    # An external database: the URL without its password (trust auth ignores it here).
    scheme, _, rest = db_url.partition("://")
    user, _, host = rest.partition("@")
    with_password = f"{scheme}://{user.split(':')[0]}:hunter2@{host}"
    code, _, stderr = await _cli("migrate", "--database-url", with_password)
    assert code == 0, stderr
    first = stderr.splitlines()[0]
    assert first.startswith("collab: data dir ") and f"@{host}" in first, first
    assert "hunter2" not in stderr
    # The embedded one: the data dir and where the cluster lives.
    code, _, stderr = await _cli(
        "user", "create", "--data-dir", str(data_dir), "--email", "first@example.com",
        "--password", "a long password",
    )  # fmt: skip
    assert code == 0, stderr
    assert stderr.splitlines()[0] == (
        f"collab: data dir {data_dir}, embedded PostgreSQL in {data_dir / 'postgres'}"
    ), stderr
    code, _, stderr = await _cli("backup", str(tmp_path / "b.tar"), "--data-dir", str(data_dir))
    assert code == 0, stderr
    assert stderr.splitlines()[0].startswith(f"collab: data dir {data_dir},"), stderr


async def test_no_runtime_dir_warning_on_commands_without_xdg_runtime_dir(data_dir) -> None:
    code, _, stderr = await _cli("migrate", "--data-dir", str(data_dir))
    assert code == 0, stderr
    assert "RuntimeDirWarning" not in stderr and "XDG_RUNTIME_DIR" not in stderr, stderr
    assert "Warning" not in stderr, stderr
