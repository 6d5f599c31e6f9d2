"""No credential reaches a log line: API keys (header or ?token=), session cookies and
passwords are scrubbed from the log of a real server process."""

from __future__ import annotations

import asyncio
import json

import httpx
import websockets

from collab.auth.tokens import SESSION_COOKIE
from tests.sync.processes import ServerProcess, free_port


async def test_no_credential_reaches_the_server_log(tmp_path, db_url) -> None:
    log = tmp_path / "server.log"
    proc = ServerProcess(tmp_path / "data", db_url, free_port(), log)
    await proc.start()
    password = "Sw0rdfish-and-chips"
    try:
        async with httpx.AsyncClient(base_url=proc.http, timeout=30) as http:
            r = await http.post(
                "/api/auth/signup", json={"email": "ada@example.com", "password": password}
            )
            assert r.status_code == 201
            cookie = r.cookies[SESSION_COOKIE]
            key = (await http.post("/api/auth/keys", json={})).json()["key"]
            wrong = await http.post(
                "/api/auth/login", json={"email": "ada@example.com", "password": password + "x"}
            )
            assert wrong.status_code == 401
            await http.post(
                "/api/auth/login", json={"email": "ada@example.com", "password": password}
            )
        async with httpx.AsyncClient(base_url=proc.http, timeout=30) as bare:
            assert (await bare.get(f"/api/auth/me?token={key}")).status_code == 200
            headers = {"Authorization": f"Bearer {key}"}
            assert (await bare.get("/api/auth/me", headers=headers)).status_code == 200
            await bare.get(f"/nowhere?token={key}&password={password}")
            await bare.get("/api/auth/me", headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})
            # A bad key: refused, and still not logged.
            await bare.get("/api/auth/me?token=ck_notarealkeybutsecretanyway")

        async with websockets.connect(f"{proc.ws}/ws?token={key}") as ws:
            await ws.send(json.dumps({"id": 1, "query": {"projects": {"title": "logs"}}}))
            project = json.loads(await ws.recv())["result"]["projects"]["project_id"]
        async with websockets.connect(
            f"{proc.ws}/ws", additional_headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}
        ) as ws:
            await ws.send(json.dumps({"id": 1, "call": "ping"}))
            await ws.recv()
        async with websockets.connect(f"{proc.ws}/yjs/{project}/notes.md?token={key}&acks=1") as ys:
            await ys.recv()
        # Refused document sockets are logged too.
        async with websockets.connect(f"{proc.ws}/yjs/{project}/../x?token={key}") as ys:
            await asyncio.wait_for(ys.wait_closed(), 10)
        await asyncio.sleep(0.5)
    finally:
        proc.stop()
    text = log.read_text()
    assert "/yjs/" in text and "ws.connect" in text and "http.request" in text
    token = cookie.split(".")[0]
    for secret in (key, key[3:], cookie, token, password, "ck_notarealkeybutsecretanyway"):
        assert secret not in text, f"a credential is in the log: {secret[:6]}…"


def test_tracebacks_and_fields_are_scrubbed_by_the_formatter() -> None:
    import logging

    from collab.logs import JsonFormatter

    key = "ck_QmFzZTY0IGxvb2tzIGxpa2UgYSBrZXk"
    try:
        raise ValueError(f"GET /api/x?token={key} failed with {{'password': 'hunter22'}}")
    except ValueError:
        import sys

        record = logging.LogRecord("t", logging.ERROR, "f", 1, "boom", (), sys.exc_info())
    record.headers = {"authorization": f"Bearer {key}", "cookie": "collab_session=abc.def"}
    line = JsonFormatter().format(record)
    assert json.loads(line)["exception"]
    for secret in (key, key[3:], "hunter22", "abc.def"):
        assert secret not in line
