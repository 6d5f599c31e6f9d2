"""Bad input is refused with a clear close code; nothing is stored and other clients in
the room carry on."""

import asyncio
import os
from uuid import UUID, uuid4

import pytest
import websockets
from pycrdt import Doc, Text, create_update_message

from collab.projects.store import create_project
from tests.conftest import make_user, serve
from tests.sync.conftest import project_file
from tests.sync.yclient import connect, until


async def _close_code(url: str, send: list[bytes | str] | None = None) -> int | None:
    async with websockets.connect(url, max_size=None) as conn:
        for message in send or []:
            await conn.send(message)
        try:
            while True:
                await asyncio.wait_for(conn.recv(), 10)
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None


def _url(server, project, path, key=None):
    query = f"?token={key}" if key else ""
    return f"{server.ws}/yjs/{project}/{path}{query}"


async def test_unauthenticated_client_is_refused(server, project):
    assert await _close_code(_url(server, project, "a.txt")) == 4401
    assert await _close_code(_url(server, project, "a.txt", "not-a-key")) == 4401


async def test_non_member_and_unknown_project_are_refused(server, user, project):
    stranger = await make_user(server)
    assert await _close_code(_url(server, project, "a.txt", stranger.key)) == 4404
    assert await _close_code(_url(server, uuid4(), "a.txt", user.key)) == 4404
    assert await _close_code(_url(server, "not-a-uuid", "a.txt", user.key)) == 4404


@pytest.mark.parametrize(
    "path",
    [
        "../escape.txt",
        "a/../../escape.txt",
        "%2e%2e/escape.txt",
        "/etc/passwd",
        "a%00b.txt",
        "a//b.txt",
        "./a.txt",
        "dir",
    ],
)
async def test_paths_that_escape_or_alias_are_refused(server, user, project, path):
    (project_file(server, project, "dir")).mkdir()
    assert await _close_code(_url(server, project, path, user.key)) == 4400
    assert await server.services.pool.fetchval("SELECT count(*) FROM yjs_documents") == 0


async def test_symlink_out_of_the_project_is_refused(server, user, project, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    os.symlink(outside, project_file(server, project, "link.txt"))
    assert await _close_code(_url(server, project, "link.txt", user.key)) == 4400
    assert outside.read_text() == "secret"


async def test_binary_file_is_refused_as_unsupported(server, user, project):
    project_file(server, project, "image.txt").write_bytes(b"\xff\xfe\x00binary")
    assert await _close_code(_url(server, project, "image.txt", user.key)) == 4415


@pytest.mark.parametrize(
    "message",
    [
        b"\x00\x02\x05\x01\x02",  # update whose length prefix overruns the frame
        b"\x00\x02\x03abc",  # update bytes that do not decode
        b"\x00\x07\x00",  # unknown sync message type
        b"\x05\x00",  # unknown message type
        b"",  # empty frame
        b"\x01\x05\x01\x01\x01",  # awareness length prefix overruns the frame
        b"\x01\x02\x05\x01",  # awareness update with entries missing
        "text frame",
    ],
)
async def test_malformed_messages_close_the_client_and_store_nothing(
    server, user, project, message
):
    async with connect(server, project, "shared.txt", user.key) as good:
        await asyncio.wait_for(good.synced.wait(), 10)
        before = await server.services.pool.fetchval("SELECT count(*) FROM yjs_updates")
        code = await _close_code(_url(server, project, "shared.txt", user.key), [message])
        assert code == 4402
        assert await server.services.pool.fetchval("SELECT count(*) FROM yjs_updates") == before
        # The well-behaved client still edits and is acknowledged.
        good.text.insert(0, "still here")
        await good.wait_acked()


@pytest.mark.parametrize(
    ("states", "code"),
    [
        (["[1, 2]"], 4402),  # not an object
        (['{"big": "' + "x" * 70_000 + '"}'], 4413),  # a message over 64 KiB
        (["{}"] * 17, 4402),  # too many client ids for one connection
        (['{"a": ' * 5000 + "1" + "}" * 5000], 4402),  # nesting that blows the parser's stack
        (['{"a": NaN}'], 4402),  # not JSON: a browser could not parse it when relayed
    ],
)
async def test_bad_awareness_updates_are_refused(server, user, project, states, code):
    from pycrdt import Encoder, create_awareness_message

    enc = Encoder()
    enc.write_var_uint(len(states))
    for client_id, state in enumerate(states, start=7):
        enc.write_var_uint(client_id)
        enc.write_var_uint(1)
        enc.write_var_string(state)
    message = create_awareness_message(enc.to_bytes())
    assert await _close_code(_url(server, project, "a.txt", user.key), [message]) == code


async def test_document_over_the_size_cap_is_refused(settings, tmp_path):
    small = settings.replace(sync_max_document_bytes=64 * 1024)
    async with serve(small) as server:
        user = await make_user(server)
        project = await create_project(
            server.services.pool, small.projects_dir, UUID(user.account_id)
        )
        async with connect(server, project, "big.txt", user.key) as good:
            await asyncio.wait_for(good.synced.wait(), 10)
            doc = Doc()
            doc.get("source", type=Text).insert(0, "x" * 100_000)
            big = create_update_message(doc.get_update())
            code = await _close_code(_url(server, project, "big.txt", user.key), [big])
            assert code == 4413
            assert await server.services.pool.fetchval("SELECT count(*) FROM yjs_updates") == 0
            assert str(good.text) == ""
            # Many small updates that add up past the cap are refused too.
            async with connect(server, project, "big.txt", user.key) as typist:
                await asyncio.wait_for(typist.synced.wait(), 10)
                for _ in range(10):
                    typist.text.insert(0, "y" * 8000)
                await asyncio.wait_for(typist.closed, 10)
                assert typist.closed.result() == 4413
            good.text.insert(0, "ok")
            await good.wait_acked()
            await until(lambda: "ok" in str(good.text))


async def test_directory_swapped_for_a_symlink_out_is_not_written_through(
    server, user, project, tmp_path
):
    from tests.sync.yclient import until as wait_until

    inside = project_file(server, project, "sub")
    inside.mkdir()
    (inside / "a.txt").write_text("start")
    outside = tmp_path / "outside"
    outside.mkdir()
    async with connect(server, project, "sub/a.txt", user.key) as a:
        await asyncio.wait_for(a.synced.wait(), 10)
        # Something with a shell in the project swaps the directory for a link out.
        inside.rename(project_file(server, project, "sub-old"))
        os.symlink(outside, inside)
        a.text.insert(0, "escaped? ")
        await a.wait_acked()
        await asyncio.sleep(1.0)
        assert list(outside.iterdir()) == []
    rooms = server.services.extra["rooms"]
    await wait_until(lambda: not rooms.rooms)
    assert list(outside.iterdir()) == []
