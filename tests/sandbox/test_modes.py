"""The sandbox when something is missing: without bwrap the server starts, says so, and
refuses to run project code; without root a user namespace gives the same view."""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from collab.errors import ApiError
from collab.sandbox.cgroups import Cgroups, Limits
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

    done = _run(jail, jail.command(["/bin/sh", "-c", script]), preexec_fn=become_nobody)
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


@pytest.mark.skipif(os.geteuid() != 0, reason="cgroups and per-project users need root")
def test_the_command_line_itself_enters_the_cgroups_and_limits_without_a_preexec_fn(
    tmp_path: Path,
) -> None:
    """The jail's command joins the project's cgroups and takes its rlimits before bwrap,
    so the server starts it without a preexec_fn (a vfork, not a fork of the server)."""
    cgroups = Cgroups.discover()
    if not cgroups.bases:
        pytest.skip("no cgroup controllers are writable here")
    name = f"collab-test-enter-{uuid.uuid4()}"
    dirs = cgroups.create(name, Limits(256 * 1024 * 1024, 64, 100))
    os.chmod(tmp_path, 0o777)
    try:
        jail = Jail(
            uuid.uuid4(), tmp_path, True, False, 65534, 65534, "nobody",
            cgroups=tuple(dirs), open_files=77, file_size=123 * 1024, python_paths=(),
        )  # fmt: skip
        script = "cat /proc/self/cgroup; echo; ulimit -n; ulimit -f; ulimit -v; id -u"
        done = _run(jail, jail.command(["/bin/sh", "-c", script], address_space=512 * 1024 * 1024))
        assert done.returncode == 0, done.stderr
        groups, limits = done.stdout.split("\n\n")
        # bwrap's cgroup namespace shows the project's cgroup as the root; the host's
        # view is the processes list of each of its directories, checked below instead.
        assert limits.split() == ["77", "246", str(512 * 1024), "65534"]  # 1 KiB/512 B blocks
        assert groups.strip()

        # While it runs, the process is listed in every one of the project's cgroups.
        proc = subprocess.Popen(jail.command(["/bin/sleep", "30"]), env=jail.environment(), cwd="/")
        try:
            deadline = 50
            while deadline and not all(_procs(d) for d in dirs):
                deadline -= 1
                subprocess.run(["sleep", "0.1"], check=True)
            assert all(_procs(d) for d in dirs), [(d, _procs(d)) for d in dirs]
        finally:
            proc.kill()
            proc.wait()
    finally:
        cgroups.remove(name)

    # A cgroup that cannot be joined stops the command: nothing runs outside it.
    gone = Jail(
        uuid.uuid4(), tmp_path, True, False, 65534, 65534, "nobody",
        cgroups=(tmp_path / "no-such-cgroup",), python_paths=(),
    )  # fmt: skip
    marker = tmp_path / "ran"
    done = _run(gone, gone.command(["/bin/sh", "-c", "touch /home/user/ran"]))
    assert done.returncode == 126, done
    assert "cgroup.procs" in done.stderr
    assert not marker.exists()


def _run(jail: Jail, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """argv (a jail's command) run from / in the jail's environment, its output kept."""
    return subprocess.run(
        argv, env=jail.environment(), capture_output=True, text=True, timeout=60,
        check=False, cwd="/", **kwargs,
    )  # fmt: skip


def _procs(path: Path) -> list[str]:
    return (path / "cgroup.procs").read_text().split()
