"""The shared terminal in the browser: what one collaborator types, every viewer sees,
and files it makes appear in the tree live."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.browser.conftest import page_for, shoot
from tests.browser.test_editor import shared_project
from tests.conftest import Served, make_user


async def test_echo_in_one_browser_shows_in_the_other(server: Served, browser: Browser) -> None:
    ada = await make_user(server, "ada@example.com", "Ada Lovelace")
    grace = await make_user(server, "grace@example.com", "Grace Hopper")
    pid = await shared_project(server, ada.key, grace.account_id, {})
    url = f"/projects/{pid}/files/shell.term"
    a = await page_for(browser, server, ada)
    g = await page_for(browser, server, grace)
    await a.goto(url)
    await expect(a.get_by_test_id("terminal-status")).to_contain_text("Shared terminal")
    await g.goto(url)
    await expect(g.get_by_test_id("terminal-status")).to_contain_text("Shared terminal")

    await a.locator(".xterm").click()
    await a.keyboard.type("echo hello from $((6*7))\n")
    await expect(g.locator(".xterm-rows")).to_contain_text("hello from 42")
    await expect(a.locator(".xterm-rows")).to_contain_text("hello from 42")

    # A file the shell makes shows up in both trees without a reload.
    await g.locator(".xterm").click()
    await g.keyboard.type("printf 'abc' > made-by-shell.txt\n")
    for page in (a, g):
        await expect(page.locator('.tree-row[data-path="made-by-shell.txt"]')).to_contain_text(
            "3 B"
        )
    await shoot(a, "terminal")
    assert a.errors == [] and g.errors == []  # type: ignore[attr-defined]
