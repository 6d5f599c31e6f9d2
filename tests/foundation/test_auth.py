"""Accounts over HTTP: sign up, sign in, sign out, sessions, API keys, rate limits."""

from __future__ import annotations

import asyncio
import sys

import pytest

from collab.auth.tokens import SESSION_COOKIE
from tests.conftest import make_user, ws_connect


async def test_signup_sets_httponly_lax_session_cookie(server) -> None:
    async with server.client() as client:
        r = await client.post(
            "/api/auth/signup",
            json={"email": "ada@example.com", "password": "analytical", "name": "Ada"},
        )
        assert r.status_code == 201
        assert r.json()["email"] == "ada@example.com" and r.json()["name"] == "Ada"
        cookie_header = r.headers["set-cookie"]
        assert SESSION_COOKIE in cookie_header
        assert "HttpOnly" in cookie_header and "SameSite=lax" in cookie_header
        me = await client.get("/api/auth/me")
        assert me.status_code == 200 and me.json()["account_id"] == r.json()["account_id"]


async def test_login_with_right_password_starts_a_session(server, user) -> None:
    async with server.client() as client:
        r = await client.post(
            "/api/auth/login", json={"email": user.email.upper(), "password": user.password}
        )
        assert r.status_code == 200, r.text
        assert (await client.get("/api/auth/me")).json()["email"] == user.email


async def test_wrong_password_is_rejected(server, user) -> None:
    async with server.client() as client:
        r = await client.post(
            "/api/auth/login", json={"email": user.email, "password": "wrong password"}
        )
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "bad_credentials"
        assert SESSION_COOKIE not in r.cookies


async def test_unknown_email_is_rejected_like_a_wrong_password(server) -> None:
    async with server.client() as client:
        r = await client.post(
            "/api/auth/login", json={"email": "nobody@example.com", "password": "whatever1"}
        )
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "bad_credentials"


async def test_signup_rejects_duplicate_email_weak_password_and_bad_email(server, user) -> None:
    async with server.client() as client:
        dup = await client.post(
            "/api/auth/signup", json={"email": user.email.upper(), "password": "longenough"}
        )
        assert dup.status_code == 409 and dup.json()["error"]["code"] == "email_taken"
        weak = await client.post(
            "/api/auth/signup", json={"email": "new@example.com", "password": "short"}
        )
        assert weak.json()["error"]["code"] == "weak_password"
        bad = await client.post(
            "/api/auth/signup", json={"email": "not-an-email", "password": "longenough"}
        )
        assert bad.json()["error"]["code"] == "bad_email"
        wrong_type = await client.post("/api/auth/signup", json={"email": 5, "password": ["x"]})
        assert wrong_type.json()["error"]["code"] == "bad_email"
        name = await client.post(
            "/api/auth/signup",
            json={"email": "n@example.com", "password": "longenough", "name": {"a": 1}},
        )
        assert name.json()["error"]["code"] == "bad_name"


@pytest.mark.parametrize(
    ("body", "content_type", "code", "status"),
    [
        (b"{not json", "application/json", "bad_json", 400),
        (b"[1, 2]", "application/json", "bad_request", 400),
        (b'{"email": "a@b.co"}', "text/plain", "bad_content_type", 415),
        (b'{"email": "' + b"a" * 70000 + b'"}', "application/json", "too_large", 413),
        (b'{"email": 1, "password": 2}', "application/json", "bad_request", 400),
    ],
)
async def test_malformed_login_bodies_get_error_codes(
    server, body, content_type, code, status
) -> None:
    async with server.client() as client:
        r = await client.post(
            "/api/auth/login", content=body, headers={"content-type": content_type}
        )
        assert r.status_code == status
        assert r.json()["error"]["code"] == code


async def test_logout_ends_the_session(server, user) -> None:
    async with server.client(cookies={SESSION_COOKIE: user.cookie}) as client:
        assert (await client.get("/api/auth/me")).status_code == 200
        assert (await client.post("/api/auth/logout")).status_code == 200
    async with server.client(cookies={SESSION_COOKIE: user.cookie}) as client:
        r = await client.get("/api/auth/me")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"


async def test_expired_session_is_rejected(server, user) -> None:
    await server.services.pool.execute(
        "UPDATE sessions SET expires = now() - interval '1 second' WHERE account_id = $1::uuid",
        user.account_id,
    )
    async with server.client(cookies={SESSION_COOKIE: user.cookie}) as client:
        assert (await client.get("/api/auth/me")).status_code == 401
    cookie_header = {"Cookie": f"{SESSION_COOKIE}={user.cookie}"}
    async with ws_connect(server, headers=cookie_header) as ws:
        await ws.conn.wait_closed()
        assert ws.conn.close_code == 4401


async def test_tampered_session_cookie_is_rejected(server, user) -> None:
    forged = user.cookie[:-2] + ("AA" if not user.cookie.endswith("AA") else "BB")
    async with server.client(cookies={SESSION_COOKIE: forged}) as client:
        assert (await client.get("/api/auth/me")).status_code == 401


async def test_api_keys_are_listed_without_secret_and_revoked_keys_are_rejected(
    server, user
) -> None:
    auth = {"Authorization": f"Bearer {user.key}"}
    async with server.client(headers=auth) as client:
        created = await client.post("/api/auth/keys", json={"name": "second"})
        assert created.status_code == 201
        second = created.json()
        listed = (await client.get("/api/auth/keys")).json()["keys"]
        assert {k["name"] for k in listed} == {"tests", "second"}
        assert all("key" not in k and k["prefix"] == "ck_" + k["prefix"][3:] for k in listed)
        assert all(second["key"][8:] not in str(k) for k in listed)
        assert (await client.delete(f"/api/auth/keys/{second['key_id']}")).status_code == 200
        again = await client.delete(f"/api/auth/keys/{second['key_id']}")
        assert again.status_code == 404
        assert (await client.delete("/api/auth/keys/not-a-uuid")).status_code == 404
    async with server.client(headers={"Authorization": f"Bearer {second['key']}"}) as client:
        r = await client.get("/api/auth/me")
        assert r.status_code == 401
    async with ws_connect(server, second["key"]) as ws:
        await ws.conn.wait_closed()
        assert ws.conn.close_code == 4401
    # Only a hash of the key is stored.
    stored = await server.services.pool.fetch("SELECT key_hash, prefix FROM api_keys")
    assert all(second["key"].encode() not in bytes(r["key_hash"]) for r in stored)


async def test_one_account_cannot_revoke_anothers_key(server, user) -> None:
    other = await make_user(server)
    async with server.client(headers={"Authorization": f"Bearer {other.key}"}) as client:
        keys = (await client.get("/api/auth/keys")).json()["keys"]
    async with server.client(headers={"Authorization": f"Bearer {user.key}"}) as client:
        r = await client.delete(f"/api/auth/keys/{keys[0]['key_id']}")
        assert r.status_code == 404
    async with server.client(headers={"Authorization": f"Bearer {other.key}"}) as client:
        assert (await client.get("/api/auth/me")).status_code == 200


async def test_sign_in_attempts_are_rate_limited_per_account(server, user) -> None:
    limit = server.services.settings.login_max_failures_per_account
    async with server.client() as client:
        for _ in range(limit):
            r = await client.post(
                "/api/auth/login", json={"email": user.email, "password": "nope nope"}
            )
            assert r.status_code == 401
        r = await client.post(
            "/api/auth/login", json={"email": user.email, "password": user.password}
        )
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "rate_limited"
        assert int(r.headers["retry-after"]) > 0


async def test_sign_in_attempts_are_rate_limited_per_address(tmp_path, db_url) -> None:
    from collab.config import Settings
    from tests.conftest import serve

    settings = Settings(
        data_dir=tmp_path / "d", database_url=db_url, secret="s", login_max_failures_per_address=3
    )
    async with serve(settings) as served:
        victim = await make_user(served)
        async with served.client() as client:
            for n in range(3):
                await client.post(
                    "/api/auth/login",
                    json={"email": f"x{n}@example.com", "password": "guess guess"},
                )
            r = await client.post(
                "/api/auth/login", json={"email": victim.email, "password": victim.password}
            )
            assert r.status_code == 429


async def test_cookie_post_from_foreign_origin_is_refused(server, user) -> None:
    async with server.client(cookies={SESSION_COOKIE: user.cookie}) as client:
        r = await client.post("/api/auth/keys", json={}, headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_origin"
        ok = await client.post("/api/auth/keys", json={}, headers={"Origin": server.http})
        assert ok.status_code == 201


async def test_password_is_stored_only_as_argon2_hash(server, user) -> None:
    row = await server.services.pool.fetchrow(
        "SELECT password_hash FROM accounts WHERE account_id = $1::uuid", user.account_id
    )
    assert row["password_hash"].startswith("$argon2id$")
    assert user.password not in row["password_hash"]


async def _cli(settings, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "collab.cli", *args,
        "--database-url", settings.database_url, "--data-dir", str(settings.data_dir),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cli_user_create_makes_an_admin_who_can_sign_in(server, settings) -> None:
    create = ("user", "create", "--email", "root@example.com", "--password", "admin password")
    code, out, err = await _cli(settings, *create, "--name", "Root", "--admin")
    assert code == 0, err
    assert "created admin account" in out
    async with server.client() as client:
        r = await client.post(
            "/api/auth/login", json={"email": "root@example.com", "password": "admin password"}
        )
        assert r.status_code == 200 and r.json()["is_admin"] is True
    code, _, err = await _cli(settings, *create)
    assert code == 1 and "email_taken" in err


async def test_cli_migrate_reports_nothing_to_apply_on_a_migrated_database(settings) -> None:
    code, out, err = await _cli(settings, "migrate")
    assert code == 0, err
    assert out.strip() == "nothing to apply"


async def test_data_dir_secret_is_generated_once_with_private_mode(tmp_path) -> None:
    from collab.app import load_secret
    from collab.config import Settings

    settings = Settings(data_dir=tmp_path / "fresh")
    first = load_secret(settings)
    assert len(first) > 40
    assert load_secret(settings) == first
    assert (tmp_path / "fresh" / "secret").stat().st_mode & 0o777 == 0o600


async def test_sessions_table_never_holds_the_cookie_token(server, user) -> None:
    rows = await server.services.pool.fetch("SELECT token_hash FROM sessions")
    token = user.cookie.rsplit(".", 1)[0]
    assert rows and all(token.encode() not in bytes(r["token_hash"]) for r in rows)
