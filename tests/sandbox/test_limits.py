"""Limits that hold: a memory hog's kernel is killed and reported dead while the server and
other projects answer; a fork bomb stays inside its project; a disk fill stops at the
quota; a project's processes share one project's part of the CPU; open files stop at
the limit. Real kernels, real shells, real cgroups (the server runs as root here)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from collab.sandbox.cgroups import Cgroups
from tests.conftest import make_user
from tests.kernels.conftest import cells, text_of, wait_for
from tests.sandbox.conftest import (
    new_project,
    project_dir,
    run_in_kernel,
    run_in_terminal,
    sandbox_server,
)
from tests.terminals.conftest import term_client

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(os.geteuid() != 0, reason="cgroup limits need the server to run as root"),
]


async def _answers(server: Any) -> None:
    async with server.client() as client:
        r = await client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"ok": True}


async def _kernel_prints(server: Any, user: Any, project: Any, code: str, expect: str) -> None:
    await run_in_kernel(server, user, project, code, path="alive.ipynb")
    rooms = server.services.extra["rooms"]
    doc = rooms.rooms[(project, "alive.ipynb")].doc
    await wait_for(lambda: expect in text_of(cells(doc)["c"]), what=f"{expect!r} printed")


async def test_a_memory_hog_is_killed_and_reported_dead_while_others_answer() -> None:
    async with sandbox_server("bwrap", sandbox_memory_bytes=300 * 1024 * 1024) as server:
        user = await make_user(server)
        hog = await new_project(server, user, "hog")
        other = await new_project(server, user, "other")
        await _kernel_prints(server, user, other, "print('before', 6 * 7)", "before 42")
        await run_in_kernel(server, user, hog, "x = b'x' * (900 * 1024 * 1024)", path="hog.ipynb")
        kernels = server.services.extra["kernels"]
        session = await wait_for(lambda: kernels.get(hog, "hog.ipynb"), what="hog kernel")
        await wait_for(lambda: session.status == "dead", timeout=120, what="hog reported dead")
        doc = server.services.extra["rooms"].rooms[(hog, "hog.ipynb")].doc
        errors = [o for o in cells(doc)["c"]["outputs"] if o["output_type"] == "error"]
        assert errors and errors[0]["ename"] == "KernelDied", cells(doc)["c"]["outputs"]
        assert "out of memory" in errors[0]["evalue"]
        assert server.services.extra["sandbox"].oom_kills(hog) >= 1
        await _answers(server)
        await _kernel_prints(server, user, other, "print('after', 6 * 7)", "after 42")


async def test_a_fork_bomb_stays_in_its_project() -> None:
    async with sandbox_server("bwrap", sandbox_pids=64) as server:
        user = await make_user(server)
        bomb = await new_project(server, user, "bomb")
        other = await new_project(server, user, "other")
        sandbox = server.services.extra["sandbox"]
        cgroup = sandbox.cgroups.bases["pids"][1] / str(bomb)
        procs = cgroup / "pids.current"
        await run_in_terminal(server, user, bomb, "b(){ b|b& }; b")
        # The bomb runs into its project's process allowance: forks past it fail.
        await wait_for(lambda: _refused_forks(cgroup) > 0, timeout=60, what="bomb at its limit")
        for _ in range(5):
            await _answers(server)
        await _kernel_prints(server, user, other, "print('still', 6 * 7)", "still 42")
        assert int(procs.read_text()) <= 64
        async with term_client(server, user.key) as term:
            args = {"project_id": str(bomb), "path": "t.term"}
            answer = await term.call("terminal.kill", args, timeout=30)
            assert "result" in answer, answer
        await wait_for(lambda: not procs.exists() or int(procs.read_text()) == 0, what="bomb gone")


def _refused_forks(cgroup: Path) -> int:
    for line in (cgroup / "pids.events").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "max":
            return int(value)
    return 0


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


async def test_a_disk_fill_stops_at_the_quota() -> None:
    quota = 40 * 1024 * 1024
    async with sandbox_server("bwrap", project_disk_quota_bytes=quota) as server:
        user = await make_user(server)
        project = await new_project(server, user, "fill")
        folder = project_dir(server, project)
        # One big file: the write fails at the quota.
        code = (
            "n = 0\n"
            "try:\n"
            "    with open('big', 'wb') as f:\n"
            "        for _ in range(400):\n"
            "            f.write(b'x' * 1024 * 1024); f.flush(); n += 1\n"
            "except OSError as e:\n"
            "    print('stopped', e.errno)\n"
        )
        await _kernel_prints(server, user, project, code, "stopped 27")  # EFBIG
        assert (folder / "big").stat().st_size <= quota
        (folder / "big").unlink()
        # Many files, each under the quota: the project's processes are stopped soon
        # after it is passed (each check is a scan of the directory, so some overshoot).
        fill = "i=0; while [ $i -lt 2000 ]; do head -c 1048576 /dev/zero > f$i; i=$((i+1)); done"
        await run_in_terminal(server, user, project, fill)
        await wait_for(lambda: _size(folder) > quota, timeout=60, what="past the quota")
        sandbox = server.services.extra["sandbox"]
        await wait_for(lambda: project not in sandbox._active, timeout=60, what="fill stopped")
        written = _size(folder)
        await asyncio.sleep(1)
        assert _size(folder) == written < 2000 * 1024 * 1024


async def test_a_disk_fill_in_the_kernels_connection_dir_stops_at_the_quota() -> None:
    """The kernel's connection dir is on the host's disk and writable from the sandbox
    (its sockets are made there): files written there count to the project's quota."""
    quota = 20 * 1024 * 1024
    async with sandbox_server("bwrap", project_disk_quota_bytes=quota) as server:
        user = await make_user(server)
        project = await new_project(server, user, "fill")
        code = (
            "import os\n"
            "from ipykernel.connect import get_connection_file\n"
            "folder = os.path.dirname(get_connection_file())\n"
            "for i in range(200):\n"
            "    with open(os.path.join(folder, f'f{i}'), 'wb') as f:\n"
            "        f.write(b'x' * 1024 * 1024)\n"
            "print('filled', folder)\n"
        )
        await run_in_kernel(server, user, project, code, path="alive.ipynb")
        sandbox = server.services.extra["sandbox"]
        await wait_for(lambda: project in sandbox._active, timeout=90, what="kernel started")
        await wait_for(lambda: project not in sandbox._active, timeout=90, what="fill stopped")


_SPIN = (
    "import time,sys; start,end=float(sys.argv[1]),float(sys.argv[2])\n"
    "while time.time()<start: time.sleep(0.005)\n"
    "t0=time.process_time()\n"
    "while time.time()<end: pass\n"
    "print(time.process_time()-t0)"
)


def _cpu_seconds(folder: Path, names: list[str]) -> list[float]:
    return [float((folder / n).read_text()) for n in names]


async def test_a_project_running_many_processes_gets_one_projects_share_of_the_cpu() -> None:
    """Four spinners in one project and one in another, all on one core over the same
    wall-clock window: the projects' cgroups share the core evenly (about 1/2 each), so
    the lone spinner gets several times what each of the four does (1/5 each without)."""
    async with sandbox_server("bwrap") as server:
        user = await make_user(server)
        many = await new_project(server, user, "many")
        one = await new_project(server, user, "one")
        for project in (many, one):
            (project_dir(server, project) / "spin.py").write_text(_SPIN)
        loop = asyncio.get_running_loop()
        start = loop.time()
        # Both terminals must be running before the window opens.
        begin = time.time() + 8
        window = f"{begin} {begin + 4}"
        spin = f"taskset -c 0 /usr/bin/python3 spin.py {window}"
        await asyncio.gather(
            run_in_terminal(
                server,
                user,
                many,
                f"for i in 1 2 3 4; do {spin} > a$i.txt & done; wait; touch done",
            ),
            run_in_terminal(server, user, one, f"{spin} > b1.txt; touch done"),
        )
        assert loop.time() - start < 8, "the terminals did not start before the window"
        for project in (many, one):
            done = project_dir(server, project) / "done"
            await wait_for(done.exists, timeout=60, what="spinners done")
        shared = _cpu_seconds(project_dir(server, many), [f"a{i}.txt" for i in range(1, 5)])
        (alone,) = _cpu_seconds(project_dir(server, one), ["b1.txt"])
        each = sum(shared) / len(shared)
        assert alone > 2 * each, (alone, shared)


@pytest.mark.parametrize("weight", [10, 100])
async def test_the_server_comes_before_project_code_when_both_want_the_cpu(weight: int) -> None:
    """A spinner in a project and one in the server's own cgroup, both on one core over
    the same window: the projects' subtree weighs `sandbox_projects_cpu_weight` against
    the server's 100, so at the default of 10 the project's spinner gets about a tenth of
    the core, and at 100 at least about half."""
    async with sandbox_server("bwrap", sandbox_projects_cpu_weight=weight) as server:
        cpu = server.services.extra["sandbox"].cgroups.bases.get("cpu")
        if cpu is None:
            pytest.skip("no writable cpu controller on this host")
        version, subtree = cpu
        weight_file = subtree / ("cpu.shares" if version == 1 else "cpu.weight")
        assert int(weight_file.read_text()) == (weight * 1024 // 100 if version == 1 else weight)
        # Another process of the server's (`collab project delete`) leaves it as it is.
        Cgroups.discover()
        assert int(weight_file.read_text()) == (weight * 1024 // 100 if version == 1 else weight)
        user = await make_user(server)
        project = await new_project(server, user, "busy")
        folder = project_dir(server, project)
        (folder / "spin.py").write_text(_SPIN)
        begin = time.time() + 6
        window = [str(begin), str(begin + 4)]
        await run_in_terminal(
            server, user, project, f"taskset -c 0 /usr/bin/python3 spin.py {' '.join(window)} "
            "> p.txt; touch done"
        )  # fmt: skip
        assert time.time() < begin, "the terminal did not start before the window"
        # The server's side: a process of the test, which is the server's own cgroup.
        ours = await asyncio.create_subprocess_exec(
            "taskset", "-c", "0", "/usr/bin/python3", "-c", _SPIN, *window,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await ours.communicate()
        await wait_for((folder / "done").exists, timeout=60, what="spinner done")
        server_side = float(out)
        (project_side,) = _cpu_seconds(folder, ["p.txt"])
        share = project_side / (project_side + server_side)
        # Anything else of the machine's on that core competes with the server's side
        # alone, so an even weight gives the project at least about half.
        if weight == 10:
            assert share < 0.2, (project_side, server_side)
        else:
            assert share > 0.35, (project_side, server_side)


async def test_open_files_stop_at_the_projects_limit() -> None:
    async with sandbox_server("bwrap", sandbox_open_files=64) as server:
        user = await make_user(server)
        project = await new_project(server, user, "files")
        probe = (
            "import os,resource\n"
            "fds=[]\n"
            "try:\n"
            "    while True: fds.append(os.open('/dev/null', os.O_RDONLY))\n"
            "except OSError as e: opened, err = len(fds), e.errno\n"
            "for fd in fds: os.close(fd)\n"
            "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
            "try:\n"
            "    resource.setrlimit(resource.RLIMIT_NOFILE, (hard * 4, hard * 4)); raised = 1\n"
            "except (ValueError, OSError): raised = 0\n"
            "open('nofile.txt', 'w').write(f'{opened} {err} {hard} {raised}')\n"
        )
        (project_dir(server, project) / "nofile.py").write_text(probe)
        await run_in_terminal(server, user, project, "/usr/bin/python3 nofile.py")
        out = project_dir(server, project) / "nofile.txt"
        await wait_for(lambda: out.exists() and out.read_text().count(" ") == 3, what="probe")
        opened, err, hard, raised = (int(x) for x in out.read_text().split())
        assert opened < 64 and err == 24  # EMFILE
        assert hard == 64 and raised == 0
