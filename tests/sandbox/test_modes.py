"""The sandbox when something is missing: without bwrap the server starts, says so, and
refuses to run project code; without root a user namespace gives the same view."""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from collab.errors import ApiError
from collab.sandbox.jail import Jail
from collab.sandbox.service import Sandbox
from tests.sandbox.conftest import sandbox_settings


async def test_without_bwrap_project_code_is_refused_not_run_bare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    sandbox = Sandbox(sandbox_settings(tmp_path, "bwrap"))
    sandbox.start()
    assert sandbox.unavailable is not None and "bubblewrap" in sandbox.unavailable
    assert any(r.getMessage().startswith("sandbox unavailable") for r in caplog.records)
    with pytest.raises(ApiError) as refused:
        await sandbox.jail(uuid.uuid4(), tmp_path)
    assert refused.value.code == "sandbox_unavailable"
    await sandbox.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="becomes an unprivileged user to try it")
def test_without_root_a_user_namespace_gives_the_same_view() -> None:
    project = Path(tempfile.mkdtemp(prefix="collab-sbx-userns-"))
    os.chmod(project, 0o777)
    (project / "mine.txt").write_text("mine")
    # Without the server's Python, which lives under /root here (a server that is not
    # root runs its own Python, which its user can read).
    jail = Jail(uuid.uuid4(), project, True, False, None, None, "nobody", python_paths=())
    script = (
        "cat /home/user/mine.txt; echo; id -u; ls /proc | grep -c '^[0-9]'; "
        "cat /etc/shadow 2>&1 | head -c 0 && echo shadow-empty; "
        "ls /tmp | wc -l; ls / | tr '\\n' ' '; echo; "
        "python3 -c \"import socket; socket.create_connection(('127.0.0.1', 5432), 2)\" "
        "2>/dev/null && echo NET || echo no-net"
    )

    def become_nobody() -> None:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)

    done = subprocess.run(
        jail.command(["/bin/sh", "-c", script]),
        env=jail.environment(),
        preexec_fn=become_nobody,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "mine"
    assert lines[1] == "65534"  # the server's user, mapped to itself
    assert int(lines[2]) <= 5  # its own process tree only (init, sh, ls, grep)
    assert lines[3] == "shadow-empty"
    assert lines[4] == "0"  # a private /tmp
    system = {"bin", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "proc", "sbin"}
    assert set(lines[5].split()) <= system | {"tmp", "usr", "var"}, lines[5]
    assert lines[-1] == "no-net"


def test_the_start_up_line_says_which_isolation_and_limits_are_in_force(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    sandbox = Sandbox(sandbox_settings(tmp_path, "bwrap", sandbox_pids=77))
    sandbox.start()
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("sandbox "))
    assert "namespaces mount, pid, ipc, uts, net" in line
    assert "open files 1024" in line
    if os.geteuid() == 0:
        assert "per-project users" in line and "processes 77 (cgroup v" in line
    else:
        assert "NOT in force" in line
