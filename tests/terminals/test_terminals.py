"""Shared terminals on real ptys through /ws."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.conftest import make_user
from tests.terminals.conftest import term_client


def _args(project: Any, path: str = "t.term", **extra: Any) -> dict[str, Any]:
    return {"project_id": str(project), "path": path, **extra}


async def test_two_clients_share_a_terminal_and_a_late_joiner_gets_the_scrollback(
    server, user, project
):
    async with term_client(server, user.key) as a, term_client(server, user.key) as b:
        opened = (await a.call("terminal.open", _args(project, rows=30, cols=100)))["result"]
        tid = opened["terminal"]
        assert (opened["rows"], opened["cols"]) == (30, 100)
        other = (await b.call("terminal.open", _args(project, rows=20, cols=120)))["result"]
        assert other["terminal"] == tid
        assert (other["rows"], other["cols"]) == (20, 100)  # the smallest of the viewers
        await a.call("terminal.input", _args(project, data="echo hello-$((40+2))\n"))
        await a.wait_output(tid, "hello-42")
        await b.wait_output(tid, "hello-42")
        await b.call("terminal.input", _args(project, data="pwd; stty size\n"))
        # The sandbox shows the project directory as the shell's home (collab/sandbox).
        await a.wait_output(tid, "/home/user")
        await a.wait_output(tid, "20 100")
        # b leaves: the size grows back to a's, and the shell lives on.
        assert (await b.call("terminal.close", _args(project)))["result"] == {"ok": True}
        resized = await a.call("terminal.resize", _args(project, rows=25, cols=90))
        assert resized["result"] == {"rows": 25, "cols": 90}
    async with term_client(server, user.key) as late:
        joined = (await late.call("terminal.open", _args(project)))["result"]
        assert joined["terminal"] == tid
        assert "hello-42" in joined["scrollback"]
        assert "/home/user" in joined["scrollback"]


async def test_yes_is_rate_capped_and_the_scrollback_stays_bounded(server, user, project):
    settings = server.services.settings
    async with term_client(server, user.key) as a:
        tid = (await a.call("terminal.open", _args(project)))["result"]["terminal"]
        terminal = server.services.extra["terminals"].get(project, "t.term")
        await a.call("terminal.input", _args(project, data="yes\n"))
        await a.wait_output(tid, "y\r\ny\r\n")
        start_bytes, started = terminal.bytes_read, time.monotonic()
        async with server.client() as http:
            for _ in range(10):
                assert (await http.get("/healthz")).status_code == 200
                await asyncio.sleep(0.1)
        rate = (terminal.bytes_read - start_bytes) / (time.monotonic() - started)
        # The token bucket allows one burst of rate_bytes on top of the rate.
        print(f"yes read at {rate:.0f} B/s")
        assert rate < settings.terminal_rate_bytes * 2.5, rate
        assert len(terminal.scrollback.encode()) <= settings.terminal_scrollback_bytes
        await a.call("terminal.input", _args(project, data="\x03"))
        await a.call("terminal.input", _args(project, data="echo stopped\n"))
        await a.wait_output(tid, "stopped")


async def test_a_terminal_outlives_its_viewers_and_is_reaped_when_idle(server, user, project):
    terminals = server.services.extra["terminals"]
    async with term_client(server, user.key) as a:
        await a.call("terminal.open", _args(project))
    await asyncio.sleep(0.1)
    terminal = terminals.get(project, "t.term")
    assert terminal is not None and terminal.alive and terminal.viewers == 0
    assert terminals.reap() == []  # not idle long enough
    object.__setattr__(terminals.settings, "terminal_idle_seconds", 0)
    assert terminals.reap() == [(project, "t.term")]
    assert not terminal.alive
    assert terminals.get(project, "t.term") is None


async def test_exit_is_reported_and_the_next_open_starts_a_new_shell(server, user, project):
    async with term_client(server, user.key) as a:
        tid = (await a.call("terminal.open", _args(project)))["result"]["terminal"]
        await a.call("terminal.input", _args(project, data="exit 3\n"))
        for _ in range(200):
            if tid in a.exits:
                break
            await asyncio.sleep(0.05)
        assert a.exits[tid] == 3
        again = (await a.call("terminal.open", _args(project)))["result"]
        assert again["terminal"] != tid


async def test_only_members_use_a_terminal(server, user, project):
    stranger = await make_user(server)
    async with term_client(server, user.key) as owner, term_client(server, stranger.key) as s:
        await owner.call("terminal.open", _args(project))
        for name, extra in [
            ("terminal.open", {}),
            ("terminal.input", {"data": "id\n"}),
            ("terminal.resize", {"rows": 5, "cols": 5}),
            ("terminal.close", {}),
            ("terminal.kill", {}),
        ]:
            answer = await s.call(name, _args(project, **extra))
            assert answer["error"]["code"] == "forbidden", (name, answer)


@pytest.mark.parametrize(
    ("name", "args", "code"),
    [
        ("terminal.open", {"path": "../x.term"}, "bad_path"),
        ("terminal.open", {"path": "/tmp/x.term"}, "bad_path"),
        ("terminal.open", {"path": "x\x00.term"}, "bad_path"),
        ("terminal.open", {"path": "x.ipynb"}, "bad_path"),
        ("terminal.open", {"path": "out/x.term"}, "bad_path"),
        ("terminal.open", {"rows": 0}, "bad_args"),
        ("terminal.open", {"cols": "80"}, "bad_args"),
        ("terminal.open", {"rows": True}, "bad_args"),
        ("terminal.open", {"cols": 5000}, "bad_args"),
        ("terminal.open", {"project_id": "nope"}, "bad_args"),
        ("terminal.open", {"extra": 1}, "bad_args"),
        ("terminal.input", {"data": "ls\n"}, "not_open"),
        ("terminal.input", {"data": ""}, "bad_args"),
        ("terminal.input", {"data": 5}, "bad_args"),
        ("terminal.input", {"data": "x" * 70_000}, "too_large"),
        ("terminal.resize", {"rows": 10, "cols": 10}, "not_open"),
        ("terminal.close", {}, "not_open"),
        ("terminal.kill", {}, "no_terminal"),
    ],
)
async def test_bad_terminal_calls_get_a_clear_error(server, user, project, name, args, code):
    (server.services.settings.projects_dir / str(project) / "out").symlink_to("/tmp")
    async with term_client(server, user.key) as a:
        answer = await a.call(name, {**_args(project), **args})
    assert answer["error"]["code"] == code, answer


async def test_the_term_document_shows_the_terminal_state(server, user, project):
    from pycrdt import Map

    from tests.kernels.conftest import MemoryRooms, wait_for

    rooms = MemoryRooms()
    server.services.extra["rooms"] = rooms
    async with term_client(server, user.key) as a, term_client(server, user.key) as b:
        tid = (await a.call("terminal.open", _args(project, rows=30, cols=90)))["result"][
            "terminal"
        ]
        room = rooms.rooms[(project, "t.term")]
        assert room.kind == "terminal" and room.holders == 1
        state = room.doc.get("terminal", type=Map)
        assert state.to_py() == {
            "id": tid, "status": "running", "rows": 30, "cols": 90, "exit_code": None
        }  # fmt: skip
        await b.call("terminal.open", _args(project, rows=20, cols=100))
        assert (state["rows"], state["cols"]) == (20, 90)
        await a.call("terminal.input", _args(project, data="exit 5\n"))
        await wait_for(lambda: state.get("status") == "exited", what="exited")
        assert state["exit_code"] == 5
        await wait_for(lambda: room.holders == 0, what="room released")
