"""Who is online: a collaborator with a document of the project open shows as online,
live, in the other member's Share panel and project header, and goes when they leave."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.browser.conftest import page_for, shoot
from tests.browser.test_editor import shared_project
from tests.conftest import Served, make_user


async def test_share_panel_shows_who_is_online(server: Served, browser: Browser) -> None:
    ada = await make_user(server, "ada@example.com", "Ada Lovelace")
    grace = await make_user(server, "grace@example.com", "Grace Hopper")
    pid = await shared_project(server, ada.key, grace.account_id, {"notes.md": "# Notes\n"})
    a = await page_for(browser, server, ada)
    await a.goto(f"/projects/{pid}")
    await a.get_by_role("button", name="Share").click()
    dialog = a.get_by_role("dialog", name="Share Essays")
    grace_row = dialog.locator(f'.person[data-account="{grace.account_id}"]')
    ada_row = dialog.locator(f'.person[data-account="{ada.account_id}"]')
    await expect(grace_row).to_contain_text("Grace Hopper")
    await expect(grace_row.locator(".online-state")).to_have_text("away")
    # Ada has the project page open: she is online herself.
    await expect(ada_row.locator(".online-state")).to_have_text("online")

    g = await page_for(browser, server, grace)
    await g.goto(f"/projects/{pid}/files/notes.md")
    await expect(g.locator(".cm-content")).to_contain_text("# Notes")
    await expect(grace_row.locator(".online-state.is-online")).to_have_text("online")
    await expect(grace_row.locator(".online-state")).to_have_attribute(
        "title", "online, in notes.md"
    )
    await expect(grace_row.locator(".presence-dot")).to_be_visible()
    await shoot(a, "share-online")
    await a.keyboard.press("Escape")
    # The header shows her too, with what she has open.
    header = a.get_by_role("list", name="Online now")
    await expect(
        header.get_by_role("listitem", name="Grace Hopper: online, in notes.md")
    ).to_be_visible()

    await g.context.close()
    await expect(
        header.get_by_role("listitem", name="Grace Hopper: online, in notes.md")
    ).to_have_count(0)
    await a.get_by_role("button", name="Share").click()
    await expect(grace_row.locator(".online-state")).to_have_text("away")
    await expect(ada_row.locator(".online-state")).to_have_text("online")
    assert a.errors == []  # type: ignore[attr-defined]
