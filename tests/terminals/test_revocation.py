"""A member removed from a project stops receiving its terminals' output at once, and
every terminal and kernel call of theirs on that project is refused."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import make_user, ws_connect
from tests.sync.yclient import until
from tests.tables.conftest import add_member, remove_member
from tests.terminals.conftest import term_client


def _args(project: Any, path: str = "t.term", **extra: Any) -> dict[str, Any]:
    return {"project_id": str(project), "path": path, **extra}


async def test_removed_member_stops_receiving_terminal_output(server, user, project) -> None:
    member = await make_user(server)
    async with ws_connect(server, user.key) as owner_ws:
        await add_member(owner_ws, str(project), member.account_id)
        async with term_client(server, user.key) as owner, term_client(server, member.key) as m:
            tid = (await owner.call("terminal.open", _args(project)))["result"]["terminal"]
            assert (await m.call("terminal.open", _args(project)))["result"]["terminal"] == tid
            # The shell prints a numbered line every 20 ms for as long as it runs.
            loop = "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.02; done\n"
            await owner.call("terminal.input", _args(project, data=loop))
            await m.wait_output(tid, "tick-5")
            await remove_member(owner_ws, str(project), member.account_id)
            await until(lambda: tid in m.errors)
            assert m.errors[tid]["code"] == "forbidden"
            frames = m.frames
            seen = m.output[tid]
            await owner.wait_output(tid, "tick-", timeout=5)
            mark = len(owner.output[tid])
            await until(lambda: len(owner.output[tid]) > mark + 200)  # the shell goes on
            assert m.frames == frames and m.output[tid] == seen
            # Every call on the project is refused now, terminals and kernels alike.
            for name, args in [
                ("terminal.input", _args(project, data="id\n")),
                ("terminal.open", _args(project)),
                ("terminal.resize", _args(project, rows=10, cols=10)),
                ("kernel.status", _args(project, path="a.ipynb")),
                ("kernel.execute", _args(project, path="a.ipynb", cell_ids=["c"])),
            ]:
                answer = await m.call(name, args)
                assert answer["error"]["code"] == "forbidden", (name, answer)
            # The member's connection itself stays open for their other projects.
            assert (await m.call("terminal.close", _args(project)))["error"]["code"] == "forbidden"
            await owner.call("terminal.kill", _args(project))
        await asyncio.sleep(0)
