"""Requests of one connection that name the same terminal run in the order sent; a killed
shell's exit is reported as a shell would (128 + signal)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.terminals.conftest import TermClient, term_client


def _args(project: Any, path: str, **extra: Any) -> dict[str, Any]:
    return {"project_id": str(project), "path": path, **extra}


async def _send(client: TermClient, name: str, args: dict[str, Any]) -> asyncio.Future[Any]:
    """Send a call without waiting for its answer."""
    msg_id = next(client._ids)
    fut = asyncio.get_running_loop().create_future()
    client._answers[msg_id] = fut
    await client.conn.send(json.dumps({"id": msg_id, "call": name, "args": args}))
    return fut


async def test_input_sent_right_after_open_without_waiting_always_finds_the_terminal_open(
    server, user, project
):
    paths = [f"o{i}.term" for i in range(8)]
    answers: list[tuple[str, Any]] = []
    # Each round is a new connection, so every open is this connection's first: the
    # input right behind it used to race the open and fail with not_open.
    for _ in range(4):
        async with term_client(server, user.key) as client:
            pending = []
            for path in paths:
                pending.append(("open", await _send(client, "terminal.open", _args(project, path))))
                pending.append(
                    (
                        "input",
                        await _send(
                            client, "terminal.input", _args(project, path, data="echo hi\n")
                        ),
                    )
                )
            for kind, fut in pending:
                answers.append((kind, await asyncio.wait_for(fut, 60)))
    failed = [(kind, a) for kind, a in answers if "error" in a]
    assert failed == [], failed[:5]
    assert len(answers) == 4 * 2 * len(paths)


async def test_requests_for_other_terminals_are_not_held_up(server, user, project):
    async with term_client(server, user.key) as client:
        await client.call("terminal.open", _args(project, "a.term"))
        # A ping and calls on another terminal answer while nothing is ordered before them.
        pong = await _send(client, "ping", {})
        opened = await _send(client, "terminal.open", _args(project, "b.term"))
        assert (await asyncio.wait_for(pong, 30))["result"] == "pong"
        assert "result" in await asyncio.wait_for(opened, 30)


async def test_a_killed_terminal_reports_a_shell_exit_status_from_0_to_255(server, user, project):
    async with term_client(server, user.key) as client:
        tid = (await client.call("terminal.open", _args(project, "k.term")))["result"]["terminal"]
        answer = await client.call("terminal.kill", _args(project, "k.term"))
        assert answer["result"] == {"ok": True}
        for _ in range(400):
            if tid in client.exits:
                break
            await asyncio.sleep(0.05)
        code = client.exits[tid]
        # SIGHUP then SIGKILL: the shell dies of one of them, reported as 128 + signal.
        assert code in (128 + 1, 128 + 9), code
