"""Sign-in limits that hold under concurrency, and passwords compared in full."""

from __future__ import annotations

import asyncio

import httpx

from collab.auth.accounts import MAX_PASSWORD
from tests.conftest import make_user
from tests.foundation.test_auth import _cli


async def test_concurrent_sign_ins_check_at_most_the_limit(server) -> None:
    """40 attempts at once, the right password 35th: no more than the limit are checked
    (the rest answer 429) and the right one, coming after the limit, does not get in."""
    victim = await make_user(server)
    limit = server.services.settings.login_max_failures_per_account
    passwords = [f"wrong guess {n}" for n in range(40)]
    passwords[34] = victim.password

    async def attempt(n: int, client: httpx.AsyncClient) -> int:
        # A millisecond apart, so the arrival order is the sending order; the whole burst
        # is far shorter than one password check.
        await asyncio.sleep(n * 0.001)
        r = await client.post(
            "/api/auth/login", json={"email": victim.email, "password": passwords[n]}
        )
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "rate_limited"
        return r.status_code

    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with server.client(limits=limits) as client:
        statuses = await asyncio.gather(*(attempt(n, client) for n in range(40)))
    checked = [s for s in statuses if s != 429]
    assert len(checked) <= limit, statuses
    assert statuses.count(429) >= 40 - limit
    assert statuses[34] == 429, statuses
    # Once limited, the right password is refused too, one at a time as well.
    async with server.client() as client:
        r = await client.post(
            "/api/auth/login", json={"email": victim.email, "password": victim.password}
        )
        assert r.status_code == 429


async def test_successful_sign_in_clears_the_attempts_it_counted(server) -> None:
    victim = await make_user(server)
    limit = server.services.settings.login_max_failures_per_account
    async with server.client() as client:
        for _ in range(3):
            for _ in range(limit - 1):
                r = await client.post(
                    "/api/auth/login", json={"email": victim.email, "password": "wrong one!"}
                )
                assert r.status_code == 401
            r = await client.post(
                "/api/auth/login", json={"email": victim.email, "password": victim.password}
            )
            assert r.status_code == 200


async def test_password_is_compared_in_full_not_on_its_first_1024_characters(server) -> None:
    password = "p" * MAX_PASSWORD
    async with server.client() as client:
        r = await client.post(
            "/api/auth/signup", json={"email": "long@example.com", "password": password}
        )
        assert r.status_code == 201, r.text
    async with server.client() as client:
        r = await client.post(
            "/api/auth/login",
            json={"email": "long@example.com", "password": password + "-and-anything"},
        )
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "bad_credentials"
        r = await client.post(
            "/api/auth/login", json={"email": "long@example.com", "password": password}
        )
        assert r.status_code == 200


async def test_over_long_password_is_refused_at_signup_never_truncated(server) -> None:
    async with server.client() as client:
        r = await client.post(
            "/api/auth/signup",
            json={"email": "longer@example.com", "password": "p" * (MAX_PASSWORD + 1)},
        )
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["code"] == "password_too_long"
        assert str(MAX_PASSWORD) in error["message"]
        # Nothing was created under a truncated password.
        r = await client.post(
            "/api/auth/login",
            json={"email": "longer@example.com", "password": "p" * MAX_PASSWORD},
        )
        assert r.status_code == 401


async def test_cli_user_create_refuses_an_over_long_password(server, settings) -> None:
    code, _, err = await _cli(
        settings,
        *("user", "create", "--email", "cli@example.com", "--password", "p" * 1025),
    )
    assert code == 1 and "password_too_long" in err and str(MAX_PASSWORD) in err
