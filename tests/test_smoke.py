from tests.conftest import ws_connect


async def test_signed_up_user_pings_over_ws_with_api_key(server, user):
    async with ws_connect(server, user.key) as ws:
        answer = await ws.call("ping")
    assert answer == {"id": 1, "result": "pong"}
