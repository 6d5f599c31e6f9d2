"""The account page: the name, and API keys made in the browser that a program can use
(the README's "make a key in the web app"); everything reachable from the keyboard."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.browser.conftest import page_for, shoot
from tests.conftest import Served, make_user, ws_connect


async def test_api_key_made_in_the_browser_works_and_revoked_stops(
    server: Served, browser: Browser
) -> None:
    ada = await make_user(server, "ada@example.com", "Ada")
    page = await page_for(browser, server, ada)
    await page.goto("/account")
    await page.get_by_label("Name", exact=True).fill("Ada Lovelace")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_text("Name saved")).to_be_visible()
    await page.get_by_label("Key name").fill("grading script")
    await page.get_by_role("button", name="Create key").click()
    key = await page.get_by_test_id("new-key").inner_text()
    assert key.startswith("ck_")
    row = page.get_by_role("row", name="grading script")
    await expect(row).to_be_visible()
    await shoot(page, "account")

    async with ws_connect(server, key) as ws:
        me = await ws.request({"query": {"accounts": {"account_id": ada.account_id, "name": None}}})
        assert me["result"]["accounts"]["name"] == "Ada Lovelace"

    await row.get_by_role("button", name="Revoke key grading script").click()
    await page.get_by_role("button", name="Revoke", exact=True).click()
    await expect(row).to_have_count(0)
    async with server.client() as http:
        r = await http.get("/api/auth/me", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 401


async def test_projects_are_reachable_from_the_keyboard(server: Served, browser: Browser) -> None:
    ada = await make_user(server, "ada@example.com", "Ada")
    page = await page_for(browser, server, ada)
    await page.goto("/projects")
    await expect(page.get_by_text("No projects yet")).to_be_visible()
    # "n" opens the new-project dialog; the title field has the focus; Enter creates.
    await page.keyboard.press("n")
    await expect(page.get_by_role("dialog")).to_be_visible()
    await page.keyboard.type("Keyboard only")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Keyboard only")).to_be_visible()
    # Tab reaches the file actions, with a visible focus ring.
    new_file = page.get_by_role("button", name="New file").first
    for _ in range(40):
        await page.keyboard.press("Tab")
        if await new_file.evaluate("el => el === document.activeElement"):
            break
    else:
        raise AssertionError("Tab never reached the New file button")
    outline = await new_file.evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline == "solid"
    await page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    await dialog.get_by_role("textbox", name="Name").fill("todo.md")
    await page.keyboard.press("Enter")
    await expect(page.locator(".cm-content")).to_be_focused()
    await page.keyboard.type("# Keyboard")
    await expect(page.get_by_role("article", name="Preview")).to_contain_text("Keyboard")
