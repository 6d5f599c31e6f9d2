"""The projects list is a live changefeed: created, renamed, shared, started elsewhere
and it shows without a reload; collaborators by email, invitations, strangers refused."""

from __future__ import annotations

import re

from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import page_for, shoot
from tests.conftest import Served, make_user, ws_connect


async def create_project(page: Page, title: str) -> str:
    await page.goto("/projects")
    await page.get_by_role("button", name="New project").first.click()
    await page.get_by_label("Title").fill(title)
    await page.get_by_role("button", name="Create").click()
    await expect(page).to_have_url(re.compile(r"/projects/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[-1]


async def share(page: Page, email: str) -> None:
    await page.get_by_role("button", name="Share").click()
    await page.get_by_label("Add people by email").fill(email)
    await page.get_by_role("button", name="Add", exact=True).click()
    await expect(page.get_by_text(f"Invited {email}")).to_be_visible()


async def test_rename_and_share_show_live_in_another_users_list(
    server: Served, browser: Browser
) -> None:
    ada = await make_user(server, "ada@example.com", "Ada Lovelace")
    grace = await make_user(server, "grace@example.com", "Grace Hopper")
    a = await page_for(browser, server, ada)
    g = await page_for(browser, server, grace)
    await g.goto("/projects")
    await expect(g.get_by_text("No projects yet")).to_be_visible()

    project_id = await create_project(a, "Linear algebra")
    await share(a, "Grace@Example.com")
    await expect(a.locator(f'.person[data-account="{grace.account_id}"]')).to_contain_text(
        "Grace Hopper"
    )
    await shoot(a, "share")
    await a.keyboard.press("Escape")

    # Grace's list, never reloaded, gains the project she was added to.
    row = g.locator(f'tr[data-project="{project_id}"]')
    await expect(row).to_contain_text("Linear algebra")

    await a.goto("/projects")
    await a.get_by_role("button", name="Rename Linear algebra").click()
    await a.get_by_label("Title").fill("Linear algebra II")
    await a.get_by_role("button", name="Rename", exact=True).click()
    await expect(row).to_contain_text("Linear algebra II")

    # Start from Grace's tab; both see the state change live.
    await row.get_by_role("button", name="Start Linear algebra II", exact=True).click()
    a_state = a.locator(f'tr[data-project="{project_id}"]').get_by_test_id("project-state")
    await expect(a_state).to_have_text("Running")
    await expect(row.get_by_test_id("project-state")).to_have_text("Running")
    await shoot(a, "projects")
    await row.get_by_role("button", name="Stop Linear algebra II", exact=True).click()
    await expect(a_state).to_have_text("Stopped")
    assert a.errors == [] and g.errors == []  # type: ignore[attr-defined]


async def test_invitation_by_email_is_accepted_at_sign_up(server: Served, browser: Browser) -> None:
    ada = await make_user(server, "ada@example.com", "Ada Lovelace")
    a = await page_for(browser, server, ada)
    project_id = await create_project(a, "Seminar")
    await share(a, "newcomer@example.com")
    await expect(a.get_by_text("newcomer@example.com", exact=True)).to_be_visible()

    n = await page_for(browser, server)
    await n.goto("/signup")
    await n.get_by_label("Name").fill("Newcomer")
    await n.get_by_label("Email").fill("Newcomer@example.com")
    await n.get_by_label("Password").fill("correct horse battery")
    await n.get_by_role("button", name="Create account").click()
    await expect(n.locator(f'tr[data-project="{project_id}"]')).to_contain_text("Seminar")
    # The owner's panel shows the newcomer as a collaborator now, and no pending invitation.
    await expect(a.locator(".person[data-account]", has_text="Newcomer")).to_contain_text(
        "collaborator"
    )
    await expect(a.get_by_text("newcomer@example.com", exact=True)).to_have_count(0)


async def test_inviting_a_stranger_email_answers_like_an_existing_one(server: Served) -> None:
    ada = await make_user(server, "ada@example.com", "Ada")
    await make_user(server, "exists@example.com", "Exists")
    mallory = await make_user(server, "mallory@example.com", "Mallory")
    async with ws_connect(server, ada.key) as ws:
        made = await ws.request({"query": {"projects": {"title": "P"}}})
        pid = made["result"]["projects"]["project_id"]
        one = await ws.call("project.invite", {"project_id": pid, "email": "exists@example.com"})
        two = await ws.call("project.invite", {"project_id": pid, "email": "nobody@example.com"})
        assert one == {"id": one["id"], "result": {"ok": True}}
        assert two == {"id": two["id"], "result": {"ok": True}}
        bad = await ws.call("project.invite", {"project_id": pid, "email": "not an email"})
        assert bad["error"]["code"] == "bad_email"
    async with ws_connect(server, mallory.key) as ws:
        refused = await ws.call("project.invite", {"project_id": pid, "email": "x@example.com"})
        assert refused["error"]["code"] == "forbidden"
        listed = await ws.call("project.invitations", {"project_id": pid})
        assert listed["error"]["code"] == "forbidden"


async def test_stranger_is_refused_every_project_url_and_download(
    server: Served, browser: Browser
) -> None:
    ada = await make_user(server, "ada@example.com", "Ada")
    eve = await make_user(server, "eve@example.com", "Eve")
    a = await page_for(browser, server, ada)
    project_id = await create_project(a, "Private")
    async with server.client() as http:
        r = await http.put(
            f"/api/projects/{project_id}/upload/secret.txt",
            content=b"top secret",
            headers={"Authorization": f"Bearer {ada.key}"},
        )
        assert r.status_code == 201, r.text
    e = await page_for(browser, server, eve)
    for url in (f"/projects/{project_id}", f"/projects/{project_id}/files/secret.txt"):
        await e.goto(url)
        await expect(e.get_by_test_id("refused")).to_be_visible()
        await expect(e.get_by_text("top secret")).to_have_count(0)
    await shoot(e, "refused")
    for url in (
        f"/api/projects/{project_id}/download/secret.txt",
        f"/raw/{project_id}/secret.txt",
    ):
        r = await e.request.get(url)
        assert r.status == 403
        assert "top secret" not in await r.text()
    r = await e.request.put(f"/api/projects/{project_id}/upload/x.txt", data=b"x")
    assert r.status == 403


async def test_list_catches_up_after_the_network_returns(server: Served, browser: Browser) -> None:
    """The feed resumes from its cursor: a rename made while this browser was offline
    arrives when it is back, without a reload."""
    from tests.browser.conftest import context_for

    ada = await make_user(server, "ada@example.com", "Ada")
    ctx = await context_for(browser, server, ada)
    page = await ctx.new_page()
    project_id = await create_project(page, "Before")
    await page.goto("/projects")
    row = page.locator(f'tr[data-project="{project_id}"]')
    await expect(row).to_contain_text("Before")
    await ctx.set_offline(True)
    await expect(page.get_by_test_id("connection")).to_have_text("Offline")
    async with ws_connect(server, ada.key) as ws:
        r = await ws.request({"query": {"projects": {"project_id": project_id, "title": "After"}}})
        assert "result" in r, r
    await ctx.set_offline(False)
    await expect(page.get_by_test_id("connection")).to_have_text("Connected")
    await expect(row).to_contain_text("After")
