"""A stock Yjs client (npm yjs + y-websocket, in node) edits alongside pycrdt clients."""

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.sync.yclient import connect, until

JS = Path(__file__).parent / "js"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """Install the npm packages once (npm ci from the committed lock file)."""
    node = shutil.which("node")
    assert node is not None, "node is required for the interop test"
    if not (JS / "node_modules" / "y-websocket").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, check=True, timeout=300)
    return JS / "node_modules"


async def test_node_yjs_client_and_pycrdt_clients_converge(server, user, project, node_modules):
    async with (
        connect(server, project, "shared.txt", user.key) as a,
        connect(server, project, "shared.txt", user.key) as b,
    ):
        await asyncio.wait_for(a.synced.wait(), 10)
        await asyncio.wait_for(b.synced.wait(), 10)
        # Announce presence so that the node client sees the server-attached identity.
        await a.send_awareness(_awareness_update(a.doc.client_id, {"user": {"name": "x"}}))
        node = await asyncio.create_subprocess_exec(
            "node",
            str(JS / "interop.mjs"),
            f"{server.ws}/yjs/{project}",
            "shared.txt",
            user.key,
            "<node>",
            "<node>,<a>,<b>",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        await until(lambda: "<node>" in str(a.text), timeout=20)
        a.text.insert(0, "<a>")
        b.text.insert(len(str(b.text)), "<b>")
        out, err = await asyncio.wait_for(node.communicate(), 30)
        assert node.returncode == 0, (out, err)
        result = json.loads(out.decode().strip().splitlines()[-1])
        await until(lambda: str(a.text) == str(b.text) == result["text"])
        for marker in ("<a>", "<b>", "<node>"):
            assert result["text"].count(marker) == 1
        # The name the client claimed is replaced by the account's, server-side.
        names = {o["name"] for o in result["others"] if o}
        assert names == {"Test User"}
        assert {o["account_id"] for o in result["others"] if o} == {user.account_id}
        # And what the node client claimed reached the pycrdt client rewritten.
        seen = b"".join(a.awareness)
        assert b"impostor" not in seen and b"someone-else" not in seen
        assert b"Test User" in seen


def _awareness_update(client_id: int, state: dict) -> bytes:
    from pycrdt import Encoder

    enc = Encoder()
    enc.write_var_uint(1)
    enc.write_var_uint(client_id)
    enc.write_var_uint(1)
    enc.write_var_string(json.dumps(state))
    return enc.to_bytes()
