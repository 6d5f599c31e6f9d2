"""The /ws loop: authentication, Origin checks, and an error for every malformed frame."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from collab.auth.tokens import SESSION_COOKIE
from tests.conftest import ws_connect

BIG = 1024 * 1024

# (frame, expected error code, expected id in the answer)
MALFORMED: list[tuple[str | bytes, str, object]] = [
    ("", "bad_json", None),
    ("{", "bad_json", None),
    ("not json", "bad_json", None),
    ("{'id': 1}", "bad_json", None),
    ('{"id": 1,}', "bad_json", None),
    ("[" * 100000, "bad_json", None),
    ("\x00", "bad_json", None),
    ("NaNx", "bad_json", None),
    ("null", "bad_message", None),
    ("1", "bad_message", None),
    ('"call"', "bad_message", None),
    ("[]", "bad_message", None),
    ('[{"id": 1, "call": "ping"}]', "bad_message", None),
    ("true", "bad_message", None),
    ("{}", "bad_id", None),
    ('{"call": "ping"}', "bad_id", None),
    ('{"id": null, "call": "ping"}', "bad_id", None),
    ('{"id": true, "call": "ping"}', "bad_id", None),
    ('{"id": 1.5, "call": "ping"}', "bad_id", None),
    ('{"id": [1], "call": "ping"}', "bad_id", None),
    ('{"id": {"a": 1}, "call": "ping"}', "bad_id", None),
    ('{"id": "' + "x" * 200 + '", "call": "ping"}', "bad_id", None),
    ('{"id": 99999999999999999999, "call": "ping"}', "bad_id", None),
    ('{"id": 1}', "unknown_operation", 1),
    ('{"id": 2, "hello": "world"}', "unknown_operation", 2),
    ('{"id": 3, "subscribe": {}}', "unknown_operation", 3),
    ('{"id": 4, "call": "ping", "cancel": "f-1"}', "bad_message", 4),
    ('{"id": 5, "call": "ping", "query": {}}', "bad_message", 5),
    ('{"id": 6, "call": null}', "bad_message", 6),
    ('{"id": 7, "call": 42}', "bad_message", 7),
    ('{"id": 8, "call": ""}', "bad_message", 8),
    ('{"id": 9, "call": ["ping"]}', "bad_message", 9),
    ('{"id": 10, "call": "' + "p" * 500 + '"}', "bad_message", 10),
    ('{"id": 11, "call": "no.such.call"}', "unknown_call", 11),
    ('{"id": 12, "call": "PING"}', "unknown_call", 12),
    ('{"id": 13, "call": "ping", "args": 5}', "bad_args", 13),
    ('{"id": 14, "call": "ping", "args": "x"}', "bad_args", 14),
    ('{"id": 15, "call": "ping", "args": [1]}', "bad_args", 15),
    ('{"id": 16, "call": "ping", "args": {"unexpected": 1}}', "bad_args", 16),
    ('{"id": 17, "call": "ping", "extra": 1}', "bad_message", 17),
    ('{"id": "s", "call": "ping", "args": true}', "bad_args", "s"),
    ('{"id": 18, "call": "ping", "args": ' + "[" * 40 + "]" * 40 + "}", "too_deep", 18),
    ('{"id": 19, "call": "ping", "args": ' + '{"a":' * 40 + "1" + "}" * 40 + "}", "too_deep", 19),
    # Served by the tables component (docs/protocol.md).
    ('{"id": 20, "query": {}}', "bad_query", 20),
    ('{"id": 21, "cancel": "f-1"}', "unknown_feed", 21),
    ('{"id": 22, "cancel": null, "call": "ping"}', "bad_message", 22),
    ("x" * (BIG + 1), "too_large", None),
    ('{"id": 24, "call": "ping", "args": {"pad": "' + "y" * BIG + '"}}', "too_large", None),
    ("é" * (BIG // 2 + 1), "too_large", None),
    (b"\x00\x01binary", "binary_not_supported", None),
]


def test_the_malformed_list_has_fifty_distinct_frames() -> None:
    assert len(MALFORMED) >= 50
    assert len({frame for frame, _, _ in MALFORMED}) == len(MALFORMED)


async def test_every_malformed_frame_gets_an_error_and_the_connection_survives(
    server, user
) -> None:
    async with ws_connect(server, user.key) as ws:
        for frame, code, msg_id in MALFORMED:
            await ws.send_raw(frame)
            answer = await ws.recv()
            assert answer["id"] == msg_id, (frame[:80], answer)
            assert answer["error"]["code"] == code, (frame[:80], answer)
            assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]
            # The connection still answers after each bad frame.
            await ws.send_raw(json.dumps({"id": "probe", "call": "ping"}))
            assert await ws.recv() == {"id": "probe", "result": "pong"}
        # Still usable after fifty bad frames.
        pong = await ws.request({"call": "ping"})
        assert pong["result"] == "pong"


async def test_ping_answers_with_the_callers_id(server, user) -> None:
    async with ws_connect(server, user.key) as ws:
        await ws.send_raw(json.dumps({"id": "abc", "call": "ping"}))
        assert await ws.recv() == {"id": "abc", "result": "pong"}
        await ws.send_raw(json.dumps({"id": 7, "call": "ping", "args": None}))
        assert await ws.recv() == {"id": 7, "result": "pong"}


async def test_pipelined_requests_are_all_answered(server, user) -> None:
    async with ws_connect(server, user.key) as ws:
        for n in range(200):
            await ws.send_raw(json.dumps({"id": n, "call": "ping"}))
        ids = {(await ws.recv())["id"] for _ in range(200)}
        assert ids == set(range(200))


async def test_unauthenticated_ws_is_closed_with_4401(server) -> None:
    async with ws_connect(server) as ws:
        await ws.conn.wait_closed()
        assert ws.conn.close_code == 4401


@pytest.mark.parametrize("token", ["ck_not-a-real-key", "garbage", "x" * 500])
async def test_ws_with_an_invalid_key_is_closed_with_4401(server, token) -> None:
    async with ws_connect(server, token) as ws:
        await ws.conn.wait_closed()
        assert ws.conn.close_code == 4401


async def test_key_in_query_string_authenticates(server, user) -> None:
    async with websockets.connect(f"{server.ws}/ws?token={user.key}") as conn:
        await conn.send(json.dumps({"id": 1, "call": "ping"}))
        assert json.loads(await conn.recv())["result"] == "pong"


async def test_cookie_ws_from_own_origin_works(server, user) -> None:
    headers = {"Cookie": f"{SESSION_COOKIE}={user.cookie}"}
    async with ws_connect(server, headers=headers, origin=server.http) as ws:
        assert (await ws.call("ping"))["result"] == "pong"


async def test_cookie_ws_from_foreign_origin_is_refused_with_4403(server, user) -> None:
    headers = {"Cookie": f"{SESSION_COOKIE}={user.cookie}"}
    async with ws_connect(server, headers=headers, origin="https://evil.example") as ws:
        await ws.conn.wait_closed()
        assert ws.conn.close_code == 4403


async def test_key_ws_is_not_subject_to_origin_checks(server, user) -> None:
    async with ws_connect(server, user.key, origin="https://some-program.example") as ws:
        assert (await ws.call("ping"))["result"] == "pong"


async def test_a_client_that_stops_reading_is_disconnected_with_4008(tmp_path, db_url) -> None:
    from collab.config import Settings
    from tests.conftest import make_user, serve

    settings = Settings(data_dir=tmp_path / "d", database_url=db_url, secret="s", ws_send_queue=8)
    async with serve(settings) as served:
        blob = "b" * 256 * 1024

        async def big(conn, args):
            return blob

        # A call with a large answer fills the socket buffers fast; the mechanism under test
        # is the connection's bounded queue, whatever produces the messages.
        served.app.state.api.register_call("test.blob", big)
        account = await make_user(served)
        # max_queue=1: the client stops reading its socket while a frame is unread.
        async with ws_connect(served, account.key, max_queue=1) as ws:
            for n in range(200):
                await ws.send_raw(json.dumps({"id": n, "call": "test.blob"}))
            await asyncio.sleep(1)
            received = 0
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await ws.recv()
                    received += 1
            assert ws.conn.close_code == 4008
            assert received < 200


async def test_permessage_deflate_is_negotiated_only_when_the_setting_is_on(settings, tmp_path):
    from tests.conftest import make_user, serve

    for on in (False, True):
        async with serve(settings.replace(ws_per_message_deflate=on)) as served:
            user = await make_user(served)
            async with ws_connect(served, user.key) as ws:
                assert (await ws.call("ping", {}))["result"] == "pong"
                offered = ws.conn.response.headers.get("Sec-WebSocket-Extensions", "")
                assert ("permessage-deflate" in offered) is on
