"""Serving the app: index.html on client routes with security headers, hashed assets
cached forever, sign-up and sign-in through the forms."""

from __future__ import annotations

import json
import re

from playwright.async_api import Browser, expect

from tests.browser.conftest import page_for, shoot
from tests.conftest import Served, make_user


async def test_client_routes_serve_the_app_with_security_headers(server: Served) -> None:
    async with server.client() as http:
        for path in ("/", "/signin", "/projects", "/account", "/projects/x/files/a/b.md"):
            r = await http.get(path)
            assert r.status_code == 200, path
            assert r.headers["content-type"].startswith("text/html")
            assert r.headers["cache-control"] == "no-cache"
            csp = r.headers["content-security-policy"]
            assert "unsafe-eval" not in csp and "script-src 'self'" in csp
            assert "frame-ancestors 'none'" in csp
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["referrer-policy"] == "same-origin"
        html = (await http.get("/")).text
        asset = re.search(r'src="(/assets/app-[A-Z0-9]+\.js)"', html)
        assert asset, html
        r = await http.get(asset.group(1), headers={"accept-encoding": "gzip"})
        assert r.status_code == 200
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert r.headers["content-type"].startswith("text/javascript")
        assert r.headers["content-encoding"] == "gzip"
        assert (await http.get("/assets/../secret")).status_code == 404
        assert (await http.get("/api/nope")).status_code == 404


async def test_the_page_names_the_signed_in_account_and_is_never_stored(server: Served) -> None:
    """The shell carries the session's account (the app skips /api/auth/me on a cold
    load), as inert JSON that no name can break out of; without a session it does not."""
    user = await make_user(server, name="</script><script>alert(1)</script>&")
    async with server.client() as http:
        plain = await http.get("/projects")
        assert 'id="collab-account"' not in plain.text
        assert plain.headers["cache-control"] == "no-cache"
        http.cookies.set("collab_session", user.cookie)
        r = await http.get("/projects/x/files/a.md")
        assert r.headers["cache-control"] == "no-store"
        found = re.search(
            r'<script type="application/json" id="collab-account">(.*?)</script>', r.text
        )
        assert found, r.text[:500]
        assert "<" not in found.group(1) and "&" not in found.group(1)
        account = json.loads(found.group(1))
        assert account["account_id"] == user.account_id
        assert account["name"] == "</script><script>alert(1)</script>&"
        http.cookies.set("collab_session", "not-a-session")
        assert 'id="collab-account"' not in (await http.get("/projects")).text


async def test_missing_build_gets_a_clear_page(server: Served, tmp_path) -> None:
    server.services.settings = server.services.settings.replace(web_dir=tmp_path / "none")
    async with server.client() as http:
        r = await http.get("/projects")
        assert r.status_code == 503
        assert "not built" in r.text and "make install" in r.text


async def test_sign_up_sign_out_and_sign_in(server: Served, browser: Browser) -> None:
    page = await page_for(browser, server)
    await page.goto("/projects")
    await expect(page).to_have_url(re.compile(r"/signin\?next=%2Fprojects$"))
    await shoot(page, "signin")
    await page.get_by_role("link", name="Create an account").click()
    await page.get_by_label("Name").fill("Ada Lovelace")
    await page.get_by_label("Email").fill("ada@example.com")
    await page.get_by_label("Password").fill("analytical engine")
    await shoot(page, "signup")
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_role("heading", name="Projects", exact=True)).to_be_visible()
    await expect(page.get_by_text("No projects yet")).to_be_visible()
    await expect(page.get_by_test_id("connection")).to_have_text("Connected")
    await shoot(page, "projects-empty")
    await page.get_by_role("button", name="Account menu").click()
    await page.get_by_role("menuitem", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.get_by_label("Email").fill("ada@example.com")
    await page.get_by_label("Password").fill("wrong password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("wrong")
    await page.get_by_label("Password").fill("analytical engine")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Projects", exact=True)).to_be_visible()
    assert page.errors == []  # type: ignore[attr-defined]
